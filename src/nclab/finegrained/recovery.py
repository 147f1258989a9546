"""Fine-label recovery: k-means inside each superclass, Hungarian matching, scoring."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.measure import measure
from nclab.core.validation import as_features, as_labels
from nclab.finegrained.labeling import CoarseLabeling, short_list


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
    from scipy.optimize import linear_sum_assignment  # imported here: slow, rarely needed

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
        # imported here: scikit-learn takes seconds to import, and ``nclab.train``
        # (which registers the recovery evaluator) is imported by every training command
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

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
        from scipy.spatial.distance import cdist

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
        out = dict(self.__dict__)
        out["fine_classes"] = list(self.fine_classes)
        out["train_confusion"] = self.train_confusion.tolist()
        out["test_confusion"] = self.test_confusion.tolist()
        return out


@dataclass(frozen=True)
class FineRecovery:
    """Fine-label recovery from coarse-trained features (definitions §6).

    Attributes
    ----------
    train_accuracy, test_accuracy : float
        Fraction of samples whose recovered fine label is the true one (``test_accuracy``
        None without test samples).
    test_coarse_accuracy : float or None
        Fraction of test samples whose predicted superclass is right: an upper bound on
        ``test_accuracy`` (a misrouted sample cannot get its fine label).
    chance_accuracy : float
        Accuracy of a uniform guess among the fine classes of the true superclass (training
        set): what recovery from features without fine structure approaches.
    coarse_nc1, fine_nc1 : float or None
        ``nc1`` (definitions §1) of the training features with the coarse / fine labels (None when
        undefined, see ``warnings``). Small ``coarse_nc1`` with high recovery is the
        point: collapsed for the coarse labels, still separable for the fine ones.
    superclasses : tuple of SuperclassRecovery
    train_confusion, test_confusion : ndarray (K, K)
        Fine confusion counts, rows true, columns recovered.
    train_recovered, test_recovered : ndarray (N,), (M,)
        The recovered fine label of every sample (for plots; left out of ``to_dict``).
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
    train_recovered: np.ndarray = field(repr=False)
    test_recovered: np.ndarray = field(repr=False)
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
        del out["train_recovered"], out["test_recovered"]
        return out

    def plot(self, ax: Any = None) -> tuple[Any, Any]:
        """Recovered fine-label accuracy per superclass, train and test, against the chance
        level 1/k of each.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Default: a new figure (pyplot, so a notebook shows it).

        Returns
        -------
        (Figure, Axes)
        """
        from nclab.report.displays import RecoveryDisplay  # layer 2, drawn on demand

        return RecoveryDisplay.from_recovery(self).plot(ax=ax)


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
        test_confusion=test_confusion, train_recovered=model.train_recovered_,
        test_recovered=recovered_test, warnings=tuple(notes),
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
        raise NCInputError(f"fine classes {short_list(split)} appear under more than one "
                           "superclass")
    absent = sorted(set(range(int(seen.max()) + 1)) - set(seen.tolist()))
    if absent:
        raise NCInputError(f"fine classes {short_list(absent)} have no training samples: pass the "
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
