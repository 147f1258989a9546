"""Why nclab's NRC1/NRC2 stay high for a trained ReLU MLP: the feature mean.

Loads the final model of a regression run directory, computes its training features and
prints how much of ||h||^2 the feature mean carries, how much of the mean direction lies
outside the row space of W, and NRC1/NRC2 of h/||h|| (definitions) against those of the
centred features (h - hbar)/||h - hbar||, the share of the centred energy
sum ||h_i - hbar||^2 outside the top-n principal directions and outside W's row space
(no per-sample normalization) and along the mean direction, plus the singular values of H.

    python experiments/regression_feature_mean.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from nclab import measure_regression
from nclab.runs import RunDir
from nclab.train import TrainConfig
from nclab.train.regression import RegressionTask


def analyse(run_dir: str) -> dict[str, float]:
    run = RunDir(run_dir)
    config = TrainConfig.from_dict(run.read_config())
    task = RegressionTask(config)
    data = task.load_data()
    model = task.build_model(data)
    model.load_state_dict(run.load_checkpoint()["model"])
    model.eval()
    with torch.no_grad():
        h = model.body(data.train.x).double().numpy()
    y = data.train.y.numpy()
    w = model.classifier.weight.detach().double().numpy()
    bias = model.classifier.bias
    b = None if bias is None else bias.detach().double().numpy()
    mean = h.mean(axis=0)
    row_space = np.linalg.svd(w, full_matrices=False)[2]
    direction = mean / np.linalg.norm(mean)
    spec = measure_regression(h, y, w, b, gamma=None)
    centred = measure_regression(h - mean, y, w, b, gamma=None)
    singular = np.linalg.svd(h, compute_uv=False)
    # Energy shares (no per-sample normalization): how much of sum ||h_i - hbar||^2
    # lies outside W's row space, and outside the top-n principal directions.
    spread = h - mean
    energy = np.sum(spread**2)
    off_w = spread - (spread @ row_space.T) @ row_space
    return {
        "mean_share_of_energy": float(mean @ mean / np.mean(np.sum(h * h, axis=1))),
        "mean_direction_off_W": float(1 - np.sum((row_space @ direction) ** 2)),
        "nrc1_spec": spec.nrc1, "nrc2_spec": spec.nrc2,
        "nrc1_centred": centred.nrc1, "nrc2_centred": centred.nrc2,
        "centred_energy_off_pca_n": float(1 - spec.top_n_explained),
        "centred_energy_off_W": float(np.sum(off_w**2) / energy),
        "centred_energy_along_mean": float(np.sum((spread @ direction) ** 2) / energy),
        "singular_values_of_H": [round(float(s), 4) for s in singular[:6] / singular[0]],
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    for path in sys.argv[1:]:
        result = analyse(path)
        print(path)
        for key, value in result.items():
            print(f"  {key:25s} {value if isinstance(value, list) else f'{value:.4g}'}")
