"""Whether the fine labels are still in coarse-trained features at all: a linear probe.

k-means recovery needs the fine split to be the dominant variation inside a superclass;
a logistic regression fitted WITH the fine labels only needs it to be linearly
separable. Their gap tells "the information is there but not the largest variation"
from "the information is gone".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.validation import as_features, as_labels


def linear_probe_accuracy(train_features: Any, train_fine: Any, train_coarse: Any,
                          test_features: Any, test_fine: Any, test_coarse: Any, *,
                          max_iter: int = 3000) -> float:
    """Test accuracy of one logistic regression per superclass, fitted on the training
    features of that superclass with their fine labels and scored on the test samples
    whose TRUE superclass it is.

    Parameters
    ----------
    train_features, test_features : arrays or tensors of shape (N, d), (M, d)
    train_fine, train_coarse, test_fine, test_coarse : int arrays of shape (N,), (M,)
    max_iter : int
        Iterations of scikit-learn's lbfgs solver.

    Returns
    -------
    float
        Fraction of test samples whose fine label the probe of their superclass gets.
        A superclass with one fine class in training counts its test samples as right.
    """
    from sklearn.linear_model import LogisticRegression  # slow to import

    train = as_features(train_features, "train features").cpu().double().numpy()
    test = as_features(test_features, "test features").cpu().double().numpy()
    if train.shape[1] != test.shape[1]:
        raise NCInputError(f"train features have {train.shape[1]} dims, test features "
                           f"{test.shape[1]}")
    labels = [as_labels(y, n, None).cpu().numpy() for y, n in (
        (train_fine, len(train)), (train_coarse, len(train)), (test_fine, len(test)),
        (test_coarse, len(test)))]
    train_fine, train_coarse, test_fine, test_coarse = labels
    if len(test) == 0:
        raise NCInputError("no test samples to score the probe on")
    correct = 0
    for s in np.unique(test_coarse):
        fit_rows, score_rows = train_coarse == s, test_coarse == s
        classes = np.unique(train_fine[fit_rows])
        if len(classes) == 0:
            raise NCInputError(f"superclass {s} has test samples but no training samples")
        if len(classes) == 1:
            correct += int((test_fine[score_rows] == classes[0]).sum())
            continue
        probe = LogisticRegression(max_iter=max_iter).fit(train[fit_rows], train_fine[fit_rows])
        correct += int((probe.predict(test[score_rows]) == test_fine[score_rows]).sum())
    return correct / len(test)
