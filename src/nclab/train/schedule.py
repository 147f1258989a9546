"""When to log, and the learning rate of each epoch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_spaced_epochs(epochs: int, points: int = 50) -> list[int]:
    """About ``points`` distinct epochs in 1..epochs, spaced logarithmically.

    The first and last epochs are always included. Early on, where a geometric grid
    would repeat epochs after rounding, consecutive epochs are taken instead, so that
    exactly ``min(points, epochs)`` epochs are returned.

    Returns
    -------
    list of int, strictly increasing
    """
    epochs, points = int(epochs), int(points)
    if points >= epochs:
        return list(range(1, epochs + 1))
    if points == 1:
        return [epochs]
    # Grow the geometric grid until rounding leaves `points` distinct values.
    size = points
    while True:
        grid = np.unique(np.rint(np.geomspace(1, epochs, size)).astype(int))
        if len(grid) >= points:
            break
        size += 1
    chosen = grid.tolist()
    while len(chosen) > points:  # overshoot by a few: drop the densest interior points
        gaps = np.diff(np.log(chosen))
        interior = int(np.argmin(gaps[:-1] + gaps[1:])) + 1
        del chosen[interior]
    return chosen


def learning_rate(
    epoch: int, base_lr: float, epochs: int, milestones: Sequence[float], gamma: float
) -> float:
    """LR during ``epoch`` (1-based): ``base_lr * gamma**k``, k = milestones passed.

    A milestone fraction f becomes the epoch ``round(f * epochs)``; epochs after it use
    the reduced rate (Papyan et al.: /10 after 1/3 and after 2/3 of the run).
    """
    passed = sum(epoch > round(f * epochs) for f in milestones)
    return base_lr * gamma**passed
