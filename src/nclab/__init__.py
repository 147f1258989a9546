"""nclab: measure, reproduce and explain Neural Collapse."""

from nclab.capture import track
from nclab.core.errors import NCInputError
from nclab.core.measure import measure, measure_regression
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.regression_metrics import RegressionMetrics, compute_regression_metrics
from nclab.core.regression_stats import RegressionStats
from nclab.core.stats import CollapseStats, DecisionStats
from nclab.runs import RunRecord, load_run

__version__ = "0.1.0"

__all__ = [
    "CollapseMetrics",
    "CollapseStats",
    "DecisionStats",
    "NCInputError",
    "RegressionMetrics",
    "RegressionStats",
    "RunRecord",
    "compute_metrics",
    "compute_regression_metrics",
    "load_run",
    "measure",
    "measure_regression",
    "track",
]
