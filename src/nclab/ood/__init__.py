"""Out-of-distribution detection built on collapse (definitions §9).

- :func:`evaluate`: from in-memory features (like :func:`nclab.measure`);
- :func:`evaluate_model`: from a model and loaders (like :func:`nclab.track`);
- :class:`OODFit`: the fitted in-distribution quantities, scoring any batch;
- :mod:`nclab.ood.scores`: one pure function per score (MSP, energy, Mahalanobis,
  NECO, NCI); :func:`detection_metrics`: AUROC, AUPR, FPR95 from the scores.

Higher scores mean more in-distribution; in-distribution samples are the positive class.
"""

from nclab.ood.evaluate import (
    METRICS,
    TPR_LEVEL,
    OODResult,
    detection_metrics,
    evaluate,
    evaluate_model,
)
from nclab.ood.fit import METHODS, NCI_ALPHA, NECO_VARIANCE, NEEDS_LOGITS, OODFit, ScoreStream

__all__ = [
    "METHODS", "METRICS", "NCI_ALPHA", "NECO_VARIANCE", "NEEDS_LOGITS", "TPR_LEVEL", "OODFit",
    "OODResult", "ScoreStream", "detection_metrics", "evaluate", "evaluate_model",
]
