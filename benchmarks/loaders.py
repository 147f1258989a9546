"""Speed and memory of the file loaders on full-size files in the real formats.

Run:  python benchmarks/loaders.py [--sets mnist mnist-gz cifar10 stl10] [--repeats 3]

Writes files of the canonical sizes (random pixels, valid headers and labels: 60,000 +
10,000 MNIST images, 50,000 + 10,000 CIFAR-10 records, 5,000 + 8,000 STL-10 images) into
a temporary folder, then compares, in one run:
(a) ``load_dataset(name, root)``, every check included;
(b) the least work any loader must do: read every file into memory with ``np.fromfile``
    and convert all its bytes to float32 / 255 (no parsing, no checks).
It also reports the peak of numpy's allocations while loading (tracemalloc) against the
size of the float32 result: memory-mapping the files keeps it near 1.0x for plain files.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_time  # noqa: E402

from nclab.data import load_dataset  # noqa: E402


def idx(path: Path, dims: tuple[int, ...], rng: np.random.Generator, high: int, gz: bool):
    body = rng.integers(0, high, int(np.prod(dims)), dtype=np.uint8).tobytes()
    data = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body
    if gz:
        path, data = path.with_name(path.name + ".gz"), gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path


def write_mnist(root: Path, rng: np.random.Generator, gz: bool = False) -> list[Path]:
    return [idx(root / f"{p}-images-idx3-ubyte", (n, 28, 28), rng, 256, gz) for p, n in
            (("train", 60000), ("t10k", 10000))] + \
           [idx(root / f"{p}-labels-idx1-ubyte", (n,), rng, 10, gz) for p, n in
            (("train", 60000), ("t10k", 10000))]


def write_cifar10(root: Path, rng: np.random.Generator) -> list[Path]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir()
    paths = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / name).write_bytes(records.tobytes())
        paths.append(folder / name)
    return paths


def write_stl10(root: Path, rng: np.random.Generator) -> list[Path]:
    folder = root / "stl10_binary"
    folder.mkdir()
    paths = []
    for split, n in (("train", 5000), ("test", 8000)):
        (folder / f"{split}_X.bin").write_bytes(rng.integers(0, 256, n * 27648, np.uint8))
        (folder / f"{split}_y.bin").write_bytes(rng.integers(1, 11, n, np.uint8))
        paths += [folder / f"{split}_X.bin", folder / f"{split}_y.bin"]
    return paths


WRITERS = {
    "mnist": ("mnist", lambda root, rng: write_mnist(root, rng)),
    "mnist-gz": ("mnist", lambda root, rng: write_mnist(root, rng, gz=True)),
    "cifar10": ("cifar10", write_cifar10),
    "stl10": ("stl10", write_stl10),
}


def baseline(paths: list[Path]) -> list[np.ndarray]:
    out = []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8) if path.suffix != ".gz" else \
            np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8)
        out.append(raw.astype(np.float32) / np.float32(255))
    return out


def peak_ratio(name: str, root: Path) -> float:
    tracemalloc.start()
    splits = load_dataset(name, root)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = splits.train.x.numel() * 4 + splits.test.x.numel() * 4
    return peak / result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'files':>10} {'MB':>6} {'loader s':>9} {'baseline s':>11} {'ratio':>6} "
          f"{'peak/result':>12}")
    for key in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            measure(key, Path(tmp), rng, args.repeats)


def measure(key: str, root: Path, rng: np.random.Generator, repeats: int) -> None:
    name, writer = WRITERS[key]
    paths = writer(root, rng)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    loader = best_time(lambda: load_dataset(name, root), repeats)
    base = best_time(lambda: baseline(paths), repeats)
    print(f"{key:>10} {megabytes:6.0f} {loader:9.3f} {base:11.3f} {loader / base:6.2f} "
          f"{peak_ratio(name, root):12.2f}", flush=True)


if __name__ == "__main__":
    main()
