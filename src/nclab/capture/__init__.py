"""Measure a model where it trains: hooks on its layers, any batch, one pass.

- :func:`track`: the collapse metrics of the classifier's input (and of more layers);
- :func:`profile`: the same layer by layer, in depth order (:class:`LayerProfile`);
- :func:`features`: the features themselves (:class:`CapturedFeatures`);
- :class:`CaptureOptions`: how batches are read and hooked tensors become rows, in one
  object (every function here also takes its fields as keywords);
- :func:`collect`: the one capture all of them (and the trainer's regression and loss
  evaluations) run on: eval mode, no gradients, hooks, any statistics object.
"""

from nclab.capture.batches import BatchFormat
from nclab.capture.hooks import POINTS, Probe, collect, probing
from nclab.capture.options import CaptureOptions
from nclab.capture.tokens import MAX_DIM, Arrangement
from nclab.capture.tracking import (
    CapturedFeatures,
    LayerProfile,
    classifier_parameters,
    features,
    find_classifier,
    profile,
    track,
)

__all__ = [
    "MAX_DIM", "POINTS", "Arrangement", "BatchFormat", "CaptureOptions", "CapturedFeatures",
    "LayerProfile",
    "Probe", "classifier_parameters", "collect", "features", "find_classifier", "probing",
    "profile", "track",
]
