"""RankMe and LiDAR of the penultimate features while a network collapses.

Garrido et al. (2023) read a high RankMe as healthy features; Neural Collapse says the
features of a classifier trained past zero error concentrate on C class means, so their
effective rank falls towards C (C - 1 once centred). This script measures both on
scikit-learn's digits (C = 10, 64 inputs) with an MLP whose penultimate layer has 128
units, trained with SGD, momentum 0.9, weight decay (5e-4) and cross-entropy, full batch
of the 1,437 training images, one thread.

Run:  python experiments/rankme_collapse.py [--epochs 3000] [--seed 0] [--weight-decay 5e-4]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nclab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    digits = load_digits()
    x = torch.tensor(digits.data[:1437] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:1437])
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9,
                                weight_decay=args.weight_decay)
    loader = DataLoader(TensorDataset(x, y), batch_size=512)
    print(f"{'epoch':>6} {'train err':>9} {'nc1':>9} {'rankme':>7} {'centred':>7} "
          f"{'lidar':>6}")
    checkpoints = {0, 25, 100, 300, 1000, args.epochs}
    for epoch in range(args.epochs + 1):
        if epoch in checkpoints:
            m = nclab.track(model, loader, spectral=True)
            print(f"{epoch:>6} {1 - m.accuracy:>9.4f} {m.nc1:>9.4g} {m.rankme:>7.2f} "
                  f"{m.rankme_centred:>7.2f} {m.lidar:>6.2f}")
        if epoch < args.epochs:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


if __name__ == "__main__":
    main()
