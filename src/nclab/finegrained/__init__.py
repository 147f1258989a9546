"""Fine-grained structure under collapse (definitions §6, Yang, Steinhardt & Hu 2023).

Train on coarse labels that merge fine classes; then, inside each superclass, cluster the
penultimate training features with k-means (k = number of fine classes in it), match the
clusters to the fine labels by the Hungarian assignment on the training set, and give each
test sample the fine label of the nearest cluster centre of its PREDICTED superclass.

- ``CoarseLabeling``: which fine classes make each superclass (``mod``, ``random``, or an
  explicit map), and ``coarsen`` / ``coarsen_splits`` to relabel data sets.
- ``SuperclassClustering``: the estimator (``fit`` on training features, ``predict``).
- ``recover_fine_labels``: fit + predict on train and test in one call, with the coarse
  ``nc1`` at the same features, returned as a ``FineRecovery`` (``to_dict()`` for JSON).
- ``linear_probe_accuracy``: whether the fine labels are linearly readable from the
  features at all (a probe fitted with them, inside each true superclass).
- ``fine_scatter_shares``: per superclass, the share of its feature scatter between its
  fine-class means, and the share of its first principal direction.
"""

from nclab.finegrained.labeling import (
    PAIRINGS,
    CoarseLabeling,
    CoarseSplits,
    coarsen_splits,
    parse_coarse_map,
)
from nclab.finegrained.probe import linear_probe_accuracy
from nclab.finegrained.recovery import (
    FineRecovery,
    SuperclassClustering,
    SuperclassRecovery,
    match_clusters,
    recover_fine_labels,
)
from nclab.finegrained.scatter import ScatterShares, fine_scatter_shares

__all__ = [
    "PAIRINGS",
    "CoarseLabeling",
    "CoarseSplits",
    "FineRecovery",
    "SuperclassClustering",
    "ScatterShares",
    "SuperclassRecovery",
    "coarsen_splits",
    "fine_scatter_shares",
    "linear_probe_accuracy",
    "match_clusters",
    "parse_coarse_map",
    "recover_fine_labels",
]
