"""One prepared run on a GPU: the statistics pass and compute_metrics at vocabulary
scale on the device, and a Lightning fit with the collapse callback.

Run:  python benchmarks/gpu.py [--device cuda] [--classes 50000 128000] [--dim 4096]
                               [--rows 131072] [--batch 4096] [--repeats 3]

Prints the card's name, then, per C (each part in its own try: one failure is printed
and the next part runs):

- the statistics pass: ``CollapseStats(C)`` fed ``--rows`` float32 features of dimension
  d in batches of ``--batch`` (tokens of a language model's vocabulary), against the
  batch products X_b^T X_b of the same batches; and the one-off finalize on read;
- ``compute_metrics`` on the device's statistics with float64 tiles and with float32
  tiles (float64 sums), each against one C x C Gram of the centred means in that dtype
  (the products of the pair pass, the part that grows as C^2 d), and the largest
  relative difference between the two tile modes' metrics (the error of float32 tiles);
- a three-epoch Lightning fit of a small classifier with ``CollapseCallback`` on the
  device: the wall time and the logged nc1.

The features are Gaussian classes (means of norm about 1, spread 0.1), generated on the
device. Times are the minimum of ``--repeats`` runs after a warm-up, with the device
synchronized around each. On a CPU (``--device cpu`` with small sizes) the script runs
the same code, which is how it is checked.
"""

from __future__ import annotations

import argparse
import math
import time
import traceback
from collections.abc import Callable

import torch

from nclab import CollapseStats, compute_metrics


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls after one warm-up, synchronized (0: one
    call without a warm-up)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = math.inf
    if repeats == 0:  # a single, cold call
        repeats = 1
    else:
        fn()
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def batches(classes: int, dim: int, rows: int, batch: int, device: torch.device
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator(device=device).manual_seed(classes)
    means = torch.randn(classes, dim, device=device, generator=generator) / math.sqrt(dim)
    out = []
    for _ in range(rows // batch):
        labels = torch.randint(0, classes, (batch,), device=device, generator=generator)
        noise = torch.randn(batch, dim, device=device, generator=generator)
        out.append((means[labels] + 0.1 / math.sqrt(dim) * noise, labels))
    return out


def statistics(classes: int, data: list, device: torch.device, repeats: int) -> CollapseStats:
    def one_pass() -> CollapseStats:
        stats = CollapseStats(classes)
        for x, y in data:
            stats.update(x, y)
        return stats

    def products() -> None:
        for x, _ in data:
            x.T @ x  # noqa: B018

    update = timed(one_pass, device, repeats)
    limit = timed(products, device, repeats)
    stats = one_pass()
    finalize = timed(lambda: stats.scaled_tensors(), device, 0)  # once: the first read
    print(f"  statistics pass: updates {update:.3f} s / batch products {limit:.3f} s = "
          f"{update / limit:.2f}x; finalize on read {finalize:.3f} s; state on "
          f"{stats.device}", flush=True)
    return stats


def metrics(stats: CollapseStats, weight: torch.Tensor, device: torch.device,
            repeats: int) -> None:
    results = {}
    scaled_means = stats.scaled_tensors()[0]
    for tiles, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        seconds = timed(lambda t=tiles: results.__setitem__(t, compute_metrics(
            stats, weight, backend="torch", tiles=t)), device, repeats)
        means = scaled_means.to(dtype)
        means = means - means.mean(dim=0)
        gram = timed(lambda m=means: m @ m.T, device, repeats)
        print(f"  compute_metrics, {tiles} tiles: {seconds:.3f} s / one {tiles} C x C Gram "
              f"{gram:.3f} s = {seconds / gram:.2f}x", flush=True)
    worst, name = 0.0, "-"
    low = results["float32"].scalars()
    for key, value in results["float64"].scalars().items():
        other = low.get(key)
        if other is None or not (math.isfinite(value) and math.isfinite(other)) or value == 0:
            continue
        error = abs(other - value) / abs(value)
        if error > worst:
            worst, name = error, key
    print(f"  float32 tiles against float64: largest relative difference {worst:.2e} "
          f"({name}); nc1 {results['float64'].nc1:.6g}", flush=True)


def lightning(device: torch.device) -> None:
    import pytorch_lightning as pl

    from nclab.integrations.lightning import CollapseCallback

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU())
            self.head = torch.nn.Linear(512, 100)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

        def training_step(self, batch, _index):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 100, (20_000,), generator=generator)
    x = torch.randn(100, 64, generator=generator)[labels] + 0.3 * torch.randn(
        20_000, 64, generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels),
                                         batch_size=256, shuffle=True)
    callback = CollapseCallback()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    trainer = pl.Trainer(max_epochs=3, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[callback])
    start = time.perf_counter()
    trainer.fit(Classifier(), loader)
    print(f"  Lightning on {accelerator}: 3 epochs with CollapseCallback "
          f"{time.perf_counter() - start:.1f} s, nc1 {callback.metrics.nc1:.4g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--classes", type=int, nargs="+", default=[50_000, 128_000])
    parser.add_argument("--dim", type=int, default=4_096)
    parser.add_argument("--rows", type=int, default=131_072)
    parser.add_argument("--batch", type=int, default=4_096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: pass --device cpu (with small sizes) to check "
                     "the script")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}); d={args.dim}, "
          f"{args.rows} rows in batches of {args.batch}", flush=True)
    for classes in args.classes:
        print(f"C={classes}", flush=True)
        try:
            data = batches(classes, args.dim, args.rows, args.batch, device)
            stats = statistics(classes, data, device, args.repeats)
            del data
            weight = torch.randn(classes, args.dim, device=device, dtype=torch.float64)
            metrics(stats, weight, device, args.repeats)
        except Exception:  # print it and go on with the next part
            traceback.print_exc()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        lightning(device)
    except Exception:
        traceback.print_exc()


if __name__ == "__main__":
    main()
