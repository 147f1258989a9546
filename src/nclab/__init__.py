"""nclab: measure, reproduce and explain Neural Collapse."""

from nclab.capture import track
from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, compute_metrics, measure
from nclab.core.stats import CollapseStats, DecisionStats

__version__ = "0.1.0"

__all__ = [
    "CollapseMetrics",
    "CollapseStats",
    "DecisionStats",
    "NCInputError",
    "compute_metrics",
    "measure",
    "track",
]
