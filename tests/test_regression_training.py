"""The standalone regression trainer: it learns, and logs NRC metrics with SPEC's gamma rule."""

import numpy as np
import pytest

from nclab import NCInputError
from nclab.data.teacher import teacher
from nclab.regression import RegressionStats, compute_regression_metrics
from nclab.regression_training import train_regression


def test_training_lowers_the_loss_and_logs_nrc_with_the_final_gamma():
    data = teacher(200, input_dim=6, target_dim=2, target_cov=[1.0, 0.3], seed=0)
    run = train_regression(data, weight_decay=1e-3, epochs=15, lr=0.1, batch_size=40,
                           width=16, record=4, seed=0)
    epochs = [row["epoch"] for row in run.history]
    assert epochs[0] == 1 and epochs[-1] == 15 and epochs == sorted(epochs)
    assert run.history[-1]["train_mse"] < 0.9 * run.history[0]["train_mse"]
    assert run.gamma is not None and 0 < run.gamma < 0.3 + 1e-9
    # the last row's NRC values agree with a fresh measurement of the final model
    import torch

    x = (data.x - data.x.mean(0)) / (data.x.std(0) + 1e-8)
    with torch.no_grad():
        features = run.model.body(torch.as_tensor(x, dtype=torch.float32))
    stats = RegressionStats().update(features, data.y)
    head = run.model.head
    fresh = compute_regression_metrics(stats, head.weight, head.bias, gamma=run.gamma)
    last = run.history[-1]
    for key in ("nrc1", "nrc2", "nrc3", "train_mse"):
        ref = fresh.mse if key == "train_mse" else getattr(fresh, key)
        assert last[key] == pytest.approx(ref, rel=1e-4), key
    assert all(np.isfinite(row["nrc3"]) for row in run.history)


def test_bad_hyperparameters():
    data = teacher(50, input_dim=3, target_dim=2, seed=0)
    with pytest.raises(NCInputError, match="weight_decay >= 0"):
        train_regression(data, weight_decay=-1.0, epochs=1)
