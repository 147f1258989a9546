"""Fine-grained structure under collapse (SPEC section 6, Yang, Steinhardt & Hu 2023).

Train on coarse labels that merge fine classes; then, inside each superclass, cluster the
penultimate training features with k-means (k = number of fine classes in it), match the
clusters to the fine labels by the Hungarian assignment on the training set, and give each
test sample the fine label of the nearest cluster centre of its PREDICTED superclass.

- ``CoarseLabeling``: which fine classes make each superclass (``mod``, ``random``, or an
  explicit map), and ``coarsen`` / ``coarsen_splits`` to relabel data sets.
- ``SuperclassClustering``: the estimator (``fit`` on training features, ``predict``).
- ``recover_fine_labels``: fit + predict on train and test in one call, with the coarse
  ``nc1`` at the same features, returned as a ``FineRecovery`` (``to_dict()`` for JSON).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from nclab._validate import as_features, as_labels
from nclab.data.base import ArrayDataset, DatasetSplits
from nclab.errors import NCInputError
from nclab.metrics import measure

PAIRINGS = ("mod", "random", "explicit")


# --------------------------------------------------------------------------- labelings


@dataclass(frozen=True)
class CoarseLabeling:
    """A map from K fine classes onto K' superclasses, every superclass non-empty.

    Build it with ``CoarseLabeling.mod``, ``.random``, ``.from_map`` or ``.create``.

    Attributes
    ----------
    fine_to_coarse : tuple of int, length K
        The superclass of each fine class.
    num_coarse : int
        K'.
    pairing : str
        How it was made: ``"mod"``, ``"random"`` or ``"explicit"``.
    """

    fine_to_coarse: tuple[int, ...]
    num_coarse: int
    pairing: str = "explicit"
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.fine_to_coarse, dtype=np.int64)
        empty = sorted(set(range(self.num_coarse)) - set(table.tolist()))
        if empty:
            raise NCInputError(f"superclasses {empty} have no fine classes "
                               f"(num_coarse={self.num_coarse})")
        object.__setattr__(self, "_table", table)

    # ---- constructors
    @classmethod
    def mod(cls, num_fine: int, num_coarse: int) -> CoarseLabeling:
        """Fine class y -> superclass y mod K'."""
        _check_sizes(num_fine, num_coarse)
        return cls(tuple(y % num_coarse for y in range(num_fine)), num_coarse, "mod")

    @classmethod
    def random(cls, num_fine: int, num_coarse: int, seed: int = 0) -> CoarseLabeling:
        """A seeded random partition into K' groups whose sizes differ by at most one."""
        _check_sizes(num_fine, num_coarse)
        order = np.random.default_rng(seed).permutation(num_fine)
        table = np.empty(num_fine, dtype=np.int64)
        table[order] = np.arange(num_fine) % num_coarse  # deal the shuffled classes round-robin
        return cls(tuple(table.tolist()), num_coarse, "random")

    @classmethod
    def from_map(
        cls, mapping: Mapping[int, int] | Sequence[int] | np.ndarray, num_fine: int | None = None,
        num_coarse: int | None = None,
    ) -> CoarseLabeling:
        """An explicit map: ``{fine: superclass}`` or a sequence whose entry y is y's superclass.

        ``num_fine`` (K) defaults to the largest fine class + 1, ``num_coarse`` (K') to the
        largest superclass + 1. Every fine class 0..K-1 must be mapped: the missing ones are
        named in the error.
        """
        pairs = _map_pairs(mapping)
        if not pairs:
            raise NCInputError("the coarse map is empty")
        num_fine = max(pairs) + 1 if num_fine is None else num_fine
        num_coarse = max(pairs.values()) + 1 if num_coarse is None else num_coarse
        _check_sizes(num_fine, num_coarse)
        missing = [y for y in range(num_fine) if y not in pairs]
        if missing:
            raise NCInputError(f"the coarse map does not cover fine classes {_short(missing)} "
                               f"(it must map every class 0..{num_fine - 1})")
        extra = sorted(y for y in pairs if not 0 <= y < num_fine)
        if extra:
            raise NCInputError(f"the coarse map names fine classes {_short(extra)} outside "
                               f"0..{num_fine - 1}")
        bad = sorted({s for s in pairs.values() if not 0 <= s < num_coarse})
        if bad:
            raise NCInputError(f"the coarse map uses superclasses {_short(bad)} outside "
                               f"0..{num_coarse - 1}")
        return cls(tuple(pairs[y] for y in range(num_fine)), num_coarse, "explicit")

    @classmethod
    def create(
        cls, pairing: str, num_fine: int, num_coarse: int | None = None, *, seed: int = 0,
        mapping: Mapping[int, int] | Sequence[int] | str | None = None,
    ) -> CoarseLabeling:
        """One entry point for a command line: ``pairing`` is one of ``PAIRINGS``.

        ``mapping`` (explicit only) may be a string, see ``parse_coarse_map``.
        """
        if pairing not in PAIRINGS:
            raise NCInputError(f"unknown pairing '{pairing}'; choose from: {', '.join(PAIRINGS)}")
        if (pairing == "explicit") != (mapping is not None):
            raise NCInputError("give a coarse map exactly when the pairing is 'explicit'")
        if pairing == "explicit":
            if isinstance(mapping, str):
                mapping = parse_coarse_map(mapping)
            return cls.from_map(mapping, num_fine, num_coarse)
        if num_coarse is None:
            raise NCInputError(f"pairing '{pairing}' needs the number of superclasses")
        if pairing == "mod":
            return cls.mod(num_fine, num_coarse)
        return cls.random(num_fine, num_coarse, seed)

    # ---- queries
    @property
    def num_fine(self) -> int:
        """K, the number of fine classes."""
        return len(self.fine_to_coarse)

    def coarse(self, y_fine: Any) -> Any:
        """Superclass of each fine label; a tensor for a tensor, else a numpy array.

        Parameters
        ----------
        y_fine : array or tensor of shape (N,), int, values in 0..K-1
        """
        y = as_labels(y_fine, len(y_fine), self.num_fine)
        if torch.is_tensor(y_fine):
            return torch.from_numpy(self._table).to(y.device)[y]
        return self._table[y.numpy()]

    def members(self, superclass: int) -> tuple[int, ...]:
        """The fine classes of ``superclass``, in increasing order."""
        if not 0 <= superclass < self.num_coarse:
            raise NCInputError(f"superclass {superclass} out of range 0..{self.num_coarse - 1}")
        return tuple(int(y) for y in np.flatnonzero(self._table == superclass))

    def coarsen(self, dataset: ArrayDataset) -> ArrayDataset:
        """The same samples (shared, not copied) with superclass labels.

        The fine labels stay in ``dataset.y``, in the same order. Class names, when the
        data set has them, are the joined fine names (``"0+5"``).
        """
        if dataset.num_classes != self.num_fine:
            raise NCInputError(f"{dataset.name}: the coarse map is for {self.num_fine} fine "
                               f"classes; the data set has {dataset.num_classes}")
        names = None
        if dataset.class_names:
            names = tuple("+".join(dataset.class_names[y] for y in self.members(s))
                          for s in range(self.num_coarse))
        return replace(dataset, y=self.coarse(dataset.y), num_classes=self.num_coarse,
                       name=f"{dataset.name}/coarse{self.num_coarse}", class_names=names)

    def to_dict(self) -> dict[str, Any]:
        return {"pairing": self.pairing, "num_fine": self.num_fine,
                "num_coarse": self.num_coarse, "fine_to_coarse": list(self.fine_to_coarse)}


@dataclass(frozen=True)
class CoarseSplits(DatasetSplits):
    """Train and test splits with superclass labels; ``fine`` keeps the fine-labelled ones.

    ``train`` / ``test`` are the coarse data sets (what a coarse model trains on); the
    samples are the same objects, in the same order, as in ``fine.train`` / ``fine.test``.
    """

    fine: DatasetSplits
    labeling: CoarseLabeling


def coarsen_splits(splits: DatasetSplits, labeling: CoarseLabeling) -> CoarseSplits:
    """Relabel both splits with ``labeling``; the fine splits stay reachable as ``.fine``."""
    return CoarseSplits(labeling.coarsen(splits.train), labeling.coarsen(splits.test),
                        fine=splits, labeling=labeling)


def parse_coarse_map(text: str) -> dict[int, int]:
    """Parse ``"0:0,1:0,2:1,3:1"`` (fine:superclass pairs) or ``"0,0,1,1"`` (by position)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise NCInputError(f"cannot read coarse map '{text}': use '0:0,1:0,2:1' or '0,0,1'")
    if all(re.fullmatch(r"\d+", item) for item in items):
        return {y: int(s) for y, s in enumerate(items)}
    pairs: dict[int, int] = {}
    for item in items:
        match = re.fullmatch(r"(\d+)\s*:\s*(\d+)", item)
        if match is None:
            raise NCInputError(f"cannot read '{item}' in the coarse map: expected fine:superclass")
        fine, coarse = int(match[1]), int(match[2])
        if fine in pairs:
            raise NCInputError(f"fine class {fine} appears twice in the coarse map")
        pairs[fine] = coarse
    return pairs


def _map_pairs(mapping: Mapping[int, int] | Sequence[int] | np.ndarray) -> dict[int, int]:
    items = mapping.items() if isinstance(mapping, Mapping) else enumerate(np.asarray(mapping))
    pairs = {}
    for fine, coarse in items:
        if int(fine) != fine or int(coarse) != coarse:
            raise NCInputError(f"the coarse map must hold integers; got {fine}: {coarse}")
        pairs[int(fine)] = int(coarse)
    return pairs


def _check_sizes(num_fine: int, num_coarse: int) -> None:
    if num_coarse < 1 or num_fine < num_coarse:
        raise NCInputError(f"need 1 <= num_coarse <= num_fine; got num_coarse={num_coarse}, "
                           f"num_fine={num_fine}")


def _short(values: list[int], limit: int = 20) -> str:
    """``[1, 2, 3]``, cut after ``limit`` values so that a message stays one short line."""
    if len(values) <= limit:
        return f"[{', '.join(str(v) for v in values)}]"
    return f"[{', '.join(str(v) for v in values[:limit])}, ...] ({len(values)} in all)"


# --------------------------------------------------------------------------- matching


def match_clusters(clusters: Any, fine: Any, classes: Sequence[int]) -> np.ndarray:
    """Hungarian assignment of k cluster ids to k fine classes, maximising agreement.

    Parameters
    ----------
    clusters : array of shape (n,), int, values in 0..k-1
        Cluster id of each sample.
    fine : array of shape (n,), int, values in ``classes``
        True fine label of each sample.
    classes : sequence of k ints
        The fine classes to match.

    Returns
    -------
    ndarray of shape (k,), int64
        ``mapping[c]`` is the fine class given to cluster ``c``; a bijection onto
        ``classes``. Renumbering the clusters renumbers ``mapping`` with them, so the label
        each sample receives does not depend on the cluster ids (up to ties in agreement).
    """
    classes = np.asarray(classes, dtype=np.int64)
    clusters, fine = np.asarray(clusters, dtype=np.int64), np.asarray(fine, dtype=np.int64)
    k = len(classes)
    if k == 0 or len(np.unique(classes)) != k:
        raise NCInputError(f"classes must be distinct and non-empty; got {classes.tolist()}")
    order = np.argsort(classes)
    position = np.minimum(np.searchsorted(classes[order], fine), k - 1)
    column = order[position]  # index of each sample's fine class in ``classes``
    if len(fine) and (clusters.min() < 0 or clusters.max() >= k
                      or not np.array_equal(classes[column], fine)):
        raise NCInputError("cluster ids must lie in 0..k-1 and fine labels in the given classes")
    agreement = np.zeros((k, k), dtype=np.int64)
    np.add.at(agreement, (clusters, column), 1)
    rows, cols = linear_sum_assignment(agreement, maximize=True)
    mapping = np.empty(k, dtype=np.int64)
    mapping[rows] = classes[cols]
    return mapping


# --------------------------------------------------------------------------- recovery


class SuperclassClustering:
    """k-means inside each superclass, clusters named by the Hungarian assignment.

    Parameters
    ----------
    n_init : int
        k-means restarts per superclass (the best inertia is kept).
    seed : int
        Seeds every k-means run.
    max_iter : int
        Lloyd iterations per run.
    threads : int, optional
        Cap on the OpenMP / BLAS threads k-means uses (default: the libraries' own). On a
        machine whose cores are busy, ``threads=1`` avoids spin-waiting threads that can
        make k-means tens of times slower.

    Attributes (after ``fit``)
    --------------------------
    labeling : CoarseLabeling
    centres_ : dict superclass -> ndarray (k, d)
        Cluster centres; row c has fine class ``cluster_labels_[s][c]``.
    cluster_labels_ : dict superclass -> ndarray (k,)
    train_recovered_ : ndarray (N,)
        Fine label recovered for each training sample (its matched k-means cluster).
    warnings_ : list of str
        Superclasses whose features have fewer distinct points than fine classes (perfect
        collapse does that): k-means could not separate them.
    """

    def __init__(self, n_init: int = 10, seed: int = 0, max_iter: int = 300,
                 threads: int | None = None) -> None:
        if n_init < 1 or max_iter < 1 or (threads is not None and threads < 1):
            raise NCInputError(f"n_init, max_iter and threads must be >= 1; got {n_init}, "
                               f"{max_iter}, {threads}")
        self.n_init, self.seed, self.max_iter, self.threads = n_init, seed, max_iter, threads

    def fit(self, features: Any, fine: Any, coarse: Any,
            labeling: CoarseLabeling | None = None) -> SuperclassClustering:
        """Cluster the training features of each superclass and match clusters to labels.

        Parameters
        ----------
        features : array or tensor of shape (N, d)
            Penultimate training features.
        fine, coarse : arrays of shape (N,), int
            Fine and superclass labels of the training samples.
        labeling : CoarseLabeling, optional
            The fine -> superclass map; inferred from the (fine, coarse) pairs when absent.
            Either way, the pairs must agree with one map.
        """
        x = _as_numpy_features(features, "train features")
        fine, coarse = _labels(fine, len(x), "train fine"), _labels(coarse, len(x), "train coarse")
        self.labeling = _consistent_labeling(fine, coarse, labeling)
        self.centres_: dict[int, np.ndarray] = {}
        self.cluster_labels_: dict[int, np.ndarray] = {}
        self.train_recovered_ = np.empty(len(x), dtype=np.int64)
        self.warnings_: list[str] = []
        for s in range(self.labeling.num_coarse):
            rows = np.flatnonzero(coarse == s)
            if len(rows) == 0:
                raise NCInputError(f"superclass {s} has no training samples: nothing to cluster")
            classes = np.unique(fine[rows])  # fine classes of s seen in training
            centres, clusters = self._kmeans(x[rows], len(classes), s)
            self.cluster_labels_[s] = match_clusters(clusters, fine[rows], classes)
            self.centres_[s] = centres
            self.train_recovered_[rows] = self.cluster_labels_[s][clusters]
        return self

    def _kmeans(self, x: np.ndarray, k: int, superclass: int) -> tuple[np.ndarray, np.ndarray]:
        if k == 1:  # a single fine class: trivially recovered
            return x.mean(axis=0, keepdims=True), np.zeros(len(x), dtype=np.int64)
        model = KMeans(k, n_init=self.n_init, max_iter=self.max_iter, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(self.threads):
            warnings.simplefilter("always", ConvergenceWarning)
            clusters = model.fit_predict(x)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            self.warnings_.append(f"superclass {superclass}: fewer distinct feature vectors "
                                  f"than its {k} fine classes; k-means cannot separate them")
        return model.cluster_centers_, clusters.astype(np.int64)

    def predict(self, features: Any, superclass: Any) -> np.ndarray:
        """Fine label of the nearest cluster centre within each sample's given superclass.

        Parameters
        ----------
        features : array or tensor of shape (M, d)
        superclass : array of shape (M,), int
            The superclass to search in for each sample (at test time: the predicted one).

        Returns
        -------
        ndarray of shape (M,), int64
        """
        if not hasattr(self, "centres_"):
            raise NCInputError("call fit before predict")
        x = _as_numpy_features(features, "features")
        dim = next(iter(self.centres_.values())).shape[1]
        if x.shape[1] != dim:
            raise NCInputError(f"features have {x.shape[1]} dims; the clusters have {dim}")
        superclass = as_labels(superclass, len(x), self.labeling.num_coarse).numpy()
        out = np.empty(len(x), dtype=np.int64)
        for s, centres in self.centres_.items():
            rows = np.flatnonzero(superclass == s)
            nearest = cdist(x[rows], centres, "sqeuclidean").argmin(axis=1)
            out[rows] = self.cluster_labels_[s][nearest]
        return out


@dataclass(frozen=True)
class SuperclassRecovery:
    """Recovery inside one superclass.

    ``train_confusion`` / ``test_confusion`` are (k, k) counts, rows the true fine class,
    columns the recovered one, both in ``fine_classes`` order; the test matrix counts the
    test samples whose true AND predicted superclass is this one, ``test_misrouted`` those
    of this superclass predicted into another. ``test_accuracy`` is over all test samples
    whose true superclass is this one (misrouted ones count as errors). ``trivial``: a
    single fine class, recovered whenever its superclass is.
    """

    superclass: int
    fine_classes: tuple[int, ...]
    trivial: bool
    num_train: int
    num_test: int
    train_accuracy: float
    test_accuracy: float | None
    test_misrouted: int
    train_confusion: np.ndarray
    test_confusion: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["fine_classes"] = list(self.fine_classes)
        out["train_confusion"] = self.train_confusion.tolist()
        out["test_confusion"] = self.test_confusion.tolist()
        return out


@dataclass(frozen=True)
class FineRecovery:
    """Fine-label recovery from coarse-trained features (SPEC section 6).

    Attributes
    ----------
    train_accuracy, test_accuracy : float
        Fraction of samples whose recovered fine label is the true one (``test_accuracy``
        None without test samples).
    test_coarse_accuracy : float or None
        Fraction of test samples whose predicted superclass is right: an upper bound on
        ``test_accuracy`` for superclasses with more than one fine class.
    chance_accuracy : float
        Accuracy of a uniform guess among the fine classes of the true superclass (training
        set): what recovery from features without fine structure approaches.
    coarse_nc1, fine_nc1 : float or None
        SPEC ``nc1`` of the training features with the coarse / fine labels (None when
        undefined, see ``warnings``). Small ``coarse_nc1`` with high recovery is the
        point: collapsed for the coarse labels, still separable for the fine ones.
    superclasses : tuple of SuperclassRecovery
    train_confusion, test_confusion : ndarray (K, K)
        Fine confusion counts, rows true, columns recovered.
    """

    train_accuracy: float
    test_accuracy: float | None
    test_coarse_accuracy: float | None
    chance_accuracy: float
    coarse_nc1: float | None
    fine_nc1: float | None
    num_fine: int
    num_coarse: int
    num_train: int
    num_test: int
    labeling: CoarseLabeling
    superclasses: tuple[SuperclassRecovery, ...]
    train_confusion: np.ndarray
    test_confusion: np.ndarray
    warnings: tuple[str, ...] = ()

    @property
    def trivial_superclasses(self) -> tuple[int, ...]:
        return tuple(r.superclass for r in self.superclasses if r.trivial)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; non-finite numbers become None."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        out["labeling"] = self.labeling.to_dict()
        out["superclasses"] = [r.to_dict() for r in self.superclasses]
        out["trivial_superclasses"] = list(self.trivial_superclasses)
        out["train_confusion"] = self.train_confusion.tolist()
        out["test_confusion"] = self.test_confusion.tolist()
        out["warnings"] = list(self.warnings)
        return out


def recover_fine_labels(
    train_features: Any,
    train_fine: Any,
    train_coarse: Any,
    test_features: Any,
    test_superclass: Any,
    test_fine: Any,
    *,
    labeling: CoarseLabeling | None = None,
    n_init: int = 10,
    seed: int = 0,
    threads: int | None = None,
) -> FineRecovery:
    """Recover fine labels from features trained on coarse labels, and score it.

    Parameters
    ----------
    train_features : array or tensor of shape (N, d)
        Penultimate features of the training set.
    train_fine, train_coarse : arrays of shape (N,), int
        Fine and superclass labels of the training set.
    test_features : array or tensor of shape (M, d)
    test_superclass : array of shape (M,), int
        The model's PREDICTED superclass of each test sample.
    test_fine : array of shape (M,), int
        True fine labels of the test set.
    labeling : CoarseLabeling, optional
        Inferred from the training pairs when absent.
    n_init, seed : int
        k-means restarts per superclass and their seed.
    threads : int, optional
        Thread cap for k-means, see ``SuperclassClustering``.

    Returns
    -------
    FineRecovery
    """
    model = SuperclassClustering(n_init=n_init, seed=seed, threads=threads).fit(
        train_features, train_fine, train_coarse, labeling)
    labeling = model.labeling
    x_test = _as_numpy_features(test_features, "test features")
    y_train = _labels(train_fine, len(model.train_recovered_), "train fine", labeling.num_fine)
    y_test = _labels(test_fine, len(x_test), "test fine", labeling.num_fine)
    s_test = _labels(test_superclass, len(x_test), "test superclass", labeling.num_coarse)
    recovered_test = model.predict(x_test, s_test)
    train_confusion = _confusion(y_train, model.train_recovered_, labeling.num_fine)
    test_confusion = _confusion(y_test, recovered_test, labeling.num_fine)
    true_test_coarse = labeling.coarse(y_test)
    per_super = tuple(
        _superclass_result(s, labeling, model, train_confusion, test_confusion,
                           int((true_test_coarse == s).sum()),
                           int(((true_test_coarse == s) & (s_test != s)).sum()))
        for s in range(labeling.num_coarse))
    notes = list(model.warnings_)
    notes += [f"superclass {r.superclass}: fine classes {missing} have no training samples "
             "and cannot be recovered"
             for r in per_super
             if (missing := sorted(set(labeling.members(r.superclass)) - set(r.fine_classes)))]
    coarse_nc1, note = _nc1(train_features, train_coarse, labeling.num_coarse, "coarse")
    fine_nc1, note_fine = _nc1(train_features, train_fine, labeling.num_fine, "fine")
    notes += [n for n in (note, note_fine) if n]
    sizes = np.bincount(labeling.fine_to_coarse, minlength=labeling.num_coarse)
    sizes = sizes[labeling.coarse(y_train)]  # fine classes in each sample's superclass
    return FineRecovery(
        train_accuracy=_rate(np.trace(train_confusion), len(y_train)),
        test_accuracy=_rate(np.trace(test_confusion), len(y_test)) if len(y_test) else None,
        test_coarse_accuracy=float((s_test == true_test_coarse).mean()) if len(y_test) else None,
        chance_accuracy=float((1.0 / sizes).mean()),
        coarse_nc1=coarse_nc1, fine_nc1=fine_nc1,
        num_fine=labeling.num_fine, num_coarse=labeling.num_coarse,
        num_train=len(y_train), num_test=len(y_test), labeling=labeling,
        superclasses=per_super, train_confusion=train_confusion,
        test_confusion=test_confusion, warnings=tuple(notes),
    )


def _superclass_result(s: int, labeling: CoarseLabeling, model: SuperclassClustering,
                       train_confusion: np.ndarray, test_confusion: np.ndarray,
                       num_test: int, misrouted: int) -> SuperclassRecovery:
    classes = np.sort(model.cluster_labels_[s])
    members = list(labeling.members(s))
    block = np.ix_(classes, classes)
    train_block, test_block = train_confusion[block], test_confusion[block]
    num_train = int(train_confusion[members].sum())
    return SuperclassRecovery(
        superclass=s, fine_classes=tuple(int(c) for c in classes), trivial=len(members) == 1,
        num_train=num_train, num_test=num_test,
        train_accuracy=_rate(np.trace(train_block), num_train),
        test_accuracy=_rate(np.trace(test_block), num_test) if num_test else None,
        test_misrouted=misrouted, train_confusion=train_block, test_confusion=test_block,
    )


def _nc1(features: Any, labels: Any, num_classes: int,
         which: str) -> tuple[float | None, str | None]:
    if num_classes < 2:
        return None, f"{which}_nc1 is undefined with a single class"
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # only nc1 is kept; cdnv may be 0/0
            return measure(features, labels, num_classes=num_classes).nc1, None
    except NCInputError as err:  # degenerate features: report, keep the recovery numbers
        return None, f"{which}_nc1 is undefined: {err}"


def _consistent_labeling(fine: np.ndarray, coarse: np.ndarray,
                         labeling: CoarseLabeling | None) -> CoarseLabeling:
    """The labeling the (fine, coarse) pairs follow; refuses pairs that follow none."""
    if labeling is not None:
        if len(fine) and (fine.max() >= labeling.num_fine or coarse.max() >= labeling.num_coarse):
            raise NCInputError(f"labels exceed the coarse map ({labeling.num_fine} fine, "
                               f"{labeling.num_coarse} coarse classes)")
        wrong = np.flatnonzero(labeling.coarse(fine) != coarse)
        if len(wrong):
            i = int(wrong[0])
            raise NCInputError(f"train sample {i} has fine class {fine[i]} and superclass "
                               f"{coarse[i]}, but the coarse map puts {fine[i]} in "
                               f"{labeling.fine_to_coarse[fine[i]]}")
        return labeling
    if len(fine) == 0:
        raise NCInputError("no training samples: nothing to cluster")
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    seen, count = np.unique(pairs[:, 0], return_counts=True)
    if (count > 1).any():
        split = seen[count > 1].tolist()
        raise NCInputError(f"fine classes {_short(split)} appear under more than one superclass")
    absent = sorted(set(range(int(seen.max()) + 1)) - set(seen.tolist()))
    if absent:
        raise NCInputError(f"fine classes {_short(absent)} have no training samples: pass the "
                           "labeling to say which superclass they belong to")
    return CoarseLabeling.from_map({int(y): int(s) for y, s in pairs})


def _as_numpy_features(features: Any, name: str) -> np.ndarray:
    return as_features(features, name).cpu().numpy().astype(np.float64, copy=False)


def _labels(labels: Any, num_samples: int, name: str, num_classes: int | None = None
            ) -> np.ndarray:
    try:
        return as_labels(labels, num_samples, num_classes).cpu().numpy()
    except NCInputError as err:
        raise NCInputError(f"{name} labels: {err}") from None


def _confusion(true: np.ndarray, recovered: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (true, recovered), 1)
    return out


def _rate(correct: float, total: int) -> float:
    return float(correct) / total if total else float("nan")
