"""The one list of data sets: classification and regression, generated or read from files.

Every builder returns :class:`~nclab.data.base.DatasetSplits`. A data set is one line
of ``DATASETS``: its builder, whether its ``y`` are class labels or real targets, and
whether it reads files under ``root``. ``load_dataset`` is the one entry point.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from nclab.core.errors import NCInputError
from nclab.data import hierarchical, synthetic
from nclab.data.base import DatasetSplits
from nclab.data.cifar import cifar10, cifar100
from nclab.data.idx import fashionmnist, kmnist, mnist
from nclab.data.imbalance import Imbalance, as_imbalance, long_tail
from nclab.data.imitation import imitation_data
from nclab.data.npz import npz_labels
from nclab.data.regression_base import npz_targets
from nclab.data.stl10 import stl10
from nclab.data.svhn import svhn
from nclab.data.teacher import teacher

#: What a data set's ``y`` are: class labels or real targets.
CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass(frozen=True)
class DatasetEntry:
    """One registered data set.

    Attributes
    ----------
    builder : callable
        ``builder([root,] **options) -> DatasetSplits``.
    kind : {"classification", "regression"}
    needs_root : bool
        The builder's first argument is the folder (or file) ``root``.
    hidden : tuple of str
        Builder parameters that are not data set options (progress callbacks).
    """

    builder: Callable[..., DatasetSplits]
    kind: str
    needs_root: bool = False
    hidden: tuple[str, ...] = ()

    def options(self) -> list[str]:
        """The options ``load_dataset`` passes on, in the builder's order."""
        names = list(inspect.signature(self.builder).parameters)[1 if self.needs_root else 0:]
        return [name for name in names if name not in self.hidden]


#: Parameters of the regression builders that are not options: the seed is
#: ``load_dataset``'s own, the callbacks are for the command line's progress.
_SEEDED = ("seed",)
_IMITATION = ("seed", "search_progress", "collect_progress")

#: name -> entry. The regression sets are seeded by ``load_dataset(..., seed=)``.
DATASETS: dict[str, DatasetEntry] = {
    "mnist1d": DatasetEntry(synthetic.mnist1d, CLASSIFICATION),
    "digits": DatasetEntry(synthetic.digits, CLASSIFICATION),
    "wine": DatasetEntry(synthetic.wine, CLASSIFICATION),
    "gaussian": DatasetEntry(synthetic.gaussian, CLASSIFICATION),
    "hierarchical": DatasetEntry(hierarchical.hierarchical, CLASSIFICATION),
    "mnist": DatasetEntry(mnist, CLASSIFICATION, needs_root=True),
    "fashionmnist": DatasetEntry(fashionmnist, CLASSIFICATION, needs_root=True),
    "kmnist": DatasetEntry(kmnist, CLASSIFICATION, needs_root=True),
    "cifar10": DatasetEntry(cifar10, CLASSIFICATION, needs_root=True),
    "cifar100": DatasetEntry(cifar100, CLASSIFICATION, needs_root=True),
    "svhn": DatasetEntry(svhn, CLASSIFICATION, needs_root=True),
    "stl10": DatasetEntry(stl10, CLASSIFICATION, needs_root=True),
    "npz_labels": DatasetEntry(npz_labels, CLASSIFICATION, needs_root=True),
    "teacher": DatasetEntry(teacher, REGRESSION, hidden=_SEEDED),
    "reacher": DatasetEntry(partial(imitation_data, "reacher"), REGRESSION, hidden=_IMITATION),
    "swimmer": DatasetEntry(partial(imitation_data, "swimmer"), REGRESSION, hidden=_IMITATION),
    "hopper": DatasetEntry(partial(imitation_data, "hopper"), REGRESSION, hidden=_IMITATION),
    "npz_targets": DatasetEntry(npz_targets, REGRESSION, needs_root=True, hidden=_SEEDED),
}

#: Old names accepted for one release (with a FutureWarning): kind -> the new name.
RENAMED: dict[str, dict[str, str]] = {
    "npz": {CLASSIFICATION: "npz_labels", REGRESSION: "npz_targets"},
}


def dataset_names(kind: str | None = None) -> list[str]:
    """The registered names, of one kind or of both."""
    return [name for name, entry in DATASETS.items() if kind in (None, entry.kind)]


def current_name(name: str, kind: str | None = None) -> str:
    """The name a renamed data set has now (with a FutureWarning), else ``name`` itself.

    The old name is translated by the kind (default classification, the meaning it had
    in ``load_dataset``).
    """
    if name not in RENAMED:
        return name
    new = RENAMED[name][kind or CLASSIFICATION]
    warnings.warn(f"data set '{name}' is renamed '{new}'; the old name is accepted for "
                  "one release", FutureWarning, stacklevel=3)
    return new


def resolve_dataset(name: str, kind: str | None = None) -> str:
    """The registered name of ``name`` for data of ``kind``, or one NCInputError line.

    A renamed name is translated (:func:`current_name`). A name of the other kind is
    refused, naming the names of ``kind``.
    """
    name = current_name(name, kind)
    entry = DATASETS.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        other = "" if entry is None else f" for {kind} (it is a {entry.kind} data set)"
        raise NCInputError(f"unknown dataset '{name}'{other}; choose from: "
                           f"{', '.join(dataset_names(kind))}")
    return name


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options that the builder of the registered data set ``name`` does not take."""
    accepted = DATASETS[name].options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise NCInputError(f"dataset '{name}' has no option {', '.join(unknown)}; its options: "
                           f"{', '.join(accepted) or 'none'}")
    for key, value in options.items():  # numpy and torch hold integers as int64
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise NCInputError(f"dataset '{name}' option {key} must fit a 64-bit integer; "
                               f"got {value}")


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    classes: list[int] | None = None,
    per_class: int | None = None,
    per_class_test: int | None = None,
    seed: int = 0,
    kind: str | None = None,
    imbalance: Imbalance | str | None = None,
    **options: Any,
) -> DatasetSplits:
    """Load a data set by name, optionally restricted to some classes and sizes.

    Parameters
    ----------
    name : str
        One of ``DATASETS`` (a renamed name is translated with a FutureWarning).
    root : path, optional
        Folder (or file) holding the data, for the data sets read from disk.
    classes : list of int, optional
        Keep these classes, relabelled 0..k-1 in this order (classification).
    per_class, per_class_test : int, optional
        At most this many training / test samples per class (a seeded random draw).
    seed : int
        Classification: seed of the per-class draw. Regression: seed of the builder
        (the samples themselves).
    kind : {"classification", "regression"}, optional
        Refuse a data set of the other kind (and translate renamed names by it).
    imbalance : Imbalance or str, optional
        Subsample the TRAINING split to a long tail (``"step:R,K"``, ``"exp:R"``; see
        :mod:`nclab.data.imbalance`), after ``classes`` and ``per_class``, seeded by
        ``seed``; the test split is left as it is. What was kept goes to
        ``info["imbalance"]``.
    **options
        Passed to the builder (for example ``num_samples`` for mnist1d).

    Returns
    -------
    DatasetSplits
        ``num_classes`` is None for regression sets.
    """
    name = resolve_dataset(name, kind)
    entry = DATASETS[name]
    check_dataset_options(name, options)
    imbalance = as_imbalance(imbalance)
    if entry.kind == REGRESSION:
        if (classes is not None or per_class is not None or per_class_test is not None
                or imbalance is not None):
            raise NCInputError(f"dataset '{name}' has real targets: classes, per-class "
                               "limits and imbalance do not apply")
        options = {**options, "seed": seed}
    args = (data_root(name, root),) if entry.needs_root else ()
    if root is not None and not entry.needs_root:
        # silently ignored, it would let a user believe the named files were used
        raise NCInputError(f"dataset '{name}' is generated, not read from files: it takes no "
                           "root (--root); leave it out")
    splits = entry.builder(*args, **options)
    if classes is not None or per_class is not None or per_class_test is not None:
        splits = splits.subset(classes, per_class, per_class_test, seed)
    if entry.kind == CLASSIFICATION:
        check_class_counts(name, splits)
    if imbalance is not None:
        train, info = long_tail(splits.train, imbalance, seed)
        splits = DatasetSplits(train, splits.test, info={**splits.info, "imbalance": info})
    return splits


def data_root(name: str, root: str | Path | None) -> Path:
    """The folder (or file) of a data set read from files; one line when it is not given
    or empty (an empty path would silently mean the current folder)."""
    if root is None:
        raise NCInputError(f"dataset '{name}' is read from files: give its folder (--root)")
    if str(root).strip() == "":
        raise NCInputError(f"dataset '{name}': its root (--root) is empty; give the folder "
                           "or file of the data")
    return Path(root).expanduser()


def check_class_counts(name: str, splits: DatasetSplits) -> None:
    """Refuse a classification split with samples of fewer than two classes: nothing can
    be classified, and no collapse measured, with one class (an empty split is left to
    the caller, who names its cause)."""
    for split in ("train", "test"):
        labels = getattr(splits, split).y
        present = len(labels.unique())
        if 0 < present < 2:
            raise NCInputError(
                f"the {split} split of dataset '{name}' holds samples of only 1 class "
                f"(of {splits.num_classes} declared): training and the collapse metrics need "
                "at least 2 (check num_classes, --classes, --per-class and the data files)")
