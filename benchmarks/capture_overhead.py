"""What nclab.track's general batch handling costs against a hand-written capture.

Run:  python benchmarks/capture_overhead.py [--repeats 7]

(a) baseline: what a user writes by hand for one model and one batch form: a forward
    pre-hook on the classifier, eval mode and no_grad, CollapseStats.update per batch,
    DecisionStats over the kept features, compute_metrics;
(b) ``nclab.track(model, loader, classifier)``: the same statistics through the one
    capture (any batch form, device and dtype moves, token alignment, call checks).
Two sizes: many small batches (the per-batch overhead shows) and the tracking benchmark's
MLP (d = 512, C = 100, batches of 128). Best of ``--repeats`` alternating runs; the ratio
(b)/(a) is the overhead. Target: <= 1.10 at the realistic size.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time  # noqa: E402

import nclab  # noqa: E402
from nclab.core.metrics import compute_metrics  # noqa: E402
from nclab.core.stats import CollapseStats, DecisionStats  # noqa: E402


def by_hand(model: nn.Module, loader: list, head: nn.Linear, num_classes: int) -> float:
    kept: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: kept.append(inputs[0]))
    model.eval()
    stats = CollapseStats(num_classes)
    with torch.no_grad():
        for x, y in loader:
            model(x)
            stats.update(kept[-1], y)
    handle.remove()
    decisions = DecisionStats.from_stats(stats, head.weight.detach(), head.bias.detach())
    for h, (_, y) in zip(kept, loader, strict=True):
        decisions.update(h, y)
    return compute_metrics(stats, head.weight.detach(), head.bias.detach(),
                           decisions=decisions).nc1


def case(widths: tuple[int, ...], classes: int, samples: int, batch: int) -> tuple[nn.Module, list]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], classes))
    x, y = torch.randn(samples, widths[0]), torch.arange(samples) % classes
    return model, [(x[i:i + batch], y[i:i + batch]) for i in range(0, samples, batch)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = {"250 batches of 16, d=16, C=10": case((8, 16), 10, 4000, 16),
             "8 batches of 128, d=512, C=100": case((64, 512, 512), 100, 1000, 128)}
    print(f"torch {torch.__version__}, 1 thread")
    for name, (model, loader) in cases.items():
        head = model[-1]
        assert by_hand(model, loader, head, head.out_features) == \
            nclab.track(model, loader, head).nc1  # the same numbers, not just the same time
        manual = partial(by_hand, model, loader, head, head.out_features)
        tracked = partial(nclab.track, model, loader, head)
        hand = track = float("inf")
        for _ in range(args.repeats):  # alternate, keep the best of each
            hand = min(hand, best_time(manual, 1))
            track = min(track, best_time(tracked, 1))
        print(f"{name}: by hand {hand * 1e3:6.1f} ms, track {track * 1e3:6.1f} ms, "
              f"ratio {track / hand:.3f}")


if __name__ == "__main__":
    main()
