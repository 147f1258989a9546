"""Loaders of the canonical data-set files, tested on small files written here in the
exact formats: the bytes are laid out by explicit loops following each format's
definition, independently of the loaders' reshapes and transposes.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from nclab.core.errors import NCInputError
from nclab.data import DATASETS, cifar, idx, load_dataset, stl10, svhn

TRAIN_LABELS = [2, 0, 1, 2, 0, 1]  # every class used in the subset tests appears twice
TEST_LABELS = [1, 2, 0]
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")  # the order of the CIFAR-10 page, used without batches.meta


@dataclass
class Written:
    """What a writer put on disk: the root to load and the images and labels expected."""

    root: Path
    train: tuple[np.ndarray, np.ndarray]  # uint8 (N, C, H, W), int64 (N,)
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int
    names: tuple[str, ...] | None


#: The count tables of the loaders, and the sizes of the small files written here in
#: place of the standard counts.
TABLES = {"cifar": cifar.RECORDS, "stl10": stl10.IMAGES, "svhn": svhn.IMAGES}
FIXTURE_COUNTS = {
    **{("cifar", f"data_batch_{i}.bin"): 2 for i in range(1, 6)},
    ("cifar", "test_batch.bin"): 3, ("cifar", "train.bin"): 6, ("cifar", "test.bin"): 3,
    ("stl10", "train_y.bin"): 6, ("stl10", "test_y.bin"): 3,
    ("svhn", "train_32x32.mat"): 6, ("svhn", "test_32x32.mat"): 3,
    ("svhn", "extra_32x32.mat"): 2,
}
#: The counts as the loaders define them, read before any test shrinks them.
STANDARD_COUNTS = {key: TABLES[key[0]][key[1]] for key in FIXTURE_COUNTS}


@pytest.fixture(autouse=True)
def small_standard_files(monkeypatch):
    """The loaders check the record count of each standard file; here they are small."""
    for (table, name), count in FIXTURE_COUNTS.items():
        monkeypatch.setitem(TABLES[table], name, count)


def images(seed: int, n: int, channels: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, rows, cols), np.uint8)


def one_line_error(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(NCInputError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- writers, one per format -------------------------------------------------------------


def idx_file(path: Path, dims: tuple[int, ...], values: list[int], gz: bool = False) -> None:
    """IDX: magic 0x0000 08 <ndim>, big-endian uint32 sizes, values row-major."""
    data = bytes([0, 0, 0x08, len(dims)])
    data += b"".join(d.to_bytes(4, "big") for d in dims) + bytes(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_idx(root: Path, folder: str = "", gz: bool = False, rows: int = 4, cols: int = 3):
    """Four IDX files with non-square images (a transposition would change the shape)."""
    where = root / folder
    splits = {"train": (images(1, 6, 1, rows, cols), TRAIN_LABELS),
              "t10k": (images(2, 3, 1, rows, cols), TEST_LABELS)}
    for prefix, (imgs, labels) in splits.items():
        flat = [int(imgs[n, 0, r, c]) for n in range(len(imgs)) for r in range(rows)
                for c in range(cols)]
        idx_file(where / f"{prefix}-images-idx3-ubyte", (len(imgs), rows, cols), flat, gz)
        idx_file(where / f"{prefix}-labels-idx1-ubyte", (len(labels),), labels, gz)
    return {k: (v[0], np.array(v[1])) for k, v in splits.items()}


def cifar_records(path: Path, imgs: np.ndarray, labels: list[tuple[int, ...]]) -> None:
    """Each record: its label bytes, then the red, green, blue planes, each row-major."""
    data = bytearray()
    for img, label in zip(imgs, labels, strict=True):
        data += bytes(label)
        data += bytes(int(img[c, r, k]) for c in range(3) for r in range(32) for k in range(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def write_cifar10(root: Path, names: bool = True) -> Written:
    folder = root / "cifar-10-batches-bin"
    train = [images(10 + b, 2, 3, 32, 32) for b in range(5)]
    labels = [[(b % 10,), ((b + 3) % 10,)] for b in range(5)]
    for b in range(5):
        cifar_records(folder / f"data_batch_{b + 1}.bin", train[b], labels[b])
    test = images(20, 3, 3, 32, 32)
    cifar_records(folder / "test_batch.bin", test, [(9,), (0,), (4,)])
    given = tuple(f"class-{i}" for i in range(10))
    if names:
        (folder / "batches.meta.txt").write_text("\n".join(given) + "\n\n")
    flat = [label[0] for batch in labels for label in batch]
    return Written(root, (np.concatenate(train), np.array(flat)), (test, np.array([9, 0, 4])),
                   10, given if names else CIFAR10_NAMES)


def write_cifar100(root: Path, label: str = "fine") -> Written:
    folder = root / "cifar-100-binary"
    coarse, fine = [3, 0, 19, 3, 0, 7], [2, 0, 99, 2, 0, 55]
    train, test = images(30, 6, 3, 32, 32), images(31, 3, 3, 32, 32)
    cifar_records(folder / "train.bin", train, list(zip(coarse, fine, strict=True)))
    cifar_records(folder / "test.bin", test, [(1, 5), (3, 2), (0, 0)])
    (folder / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    (folder / "coarse_label_names.txt").write_text("\n".join(f"c{i}" for i in range(20)))
    if label == "fine":
        return Written(root, (train, np.array(fine)), (test, np.array([5, 2, 0])), 100,
                       tuple(f"f{i}" for i in range(100)))
    return Written(root, (train, np.array(coarse)), (test, np.array([1, 3, 0])), 20,
                   tuple(f"c{i}" for i in range(20)))


def svhn_mat(path: Path, imgs: np.ndarray, digits: list[int]) -> None:
    """X is (row, column, channel, sample); y is (N, 1) with 10 standing for digit 0."""
    x = np.zeros((32, 32, 3, len(imgs)), dtype=np.uint8)
    for n in range(len(imgs)):
        for c in range(3):
            x[:, :, c, n] = imgs[n, c]
    y = np.array([[10 if d == 0 else d] for d in digits], dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})


def write_svhn(root: Path) -> Written:
    train, test = images(40, 6, 3, 32, 32), images(41, 3, 3, 32, 32)
    svhn_mat(root / "train_32x32.mat", train, TRAIN_LABELS)
    svhn_mat(root / "test_32x32.mat", test, TEST_LABELS)
    return Written(root, (train, np.array(TRAIN_LABELS)), (test, np.array(TEST_LABELS)), 10,
                   tuple(str(i) for i in range(10)))


def stl10_files(folder: Path, split: str, imgs: np.ndarray, labels: list[int]) -> None:
    """Images channel after channel, each channel column-major; labels 1..10."""
    data = bytes(int(img[c, r, k]) for img in imgs for c in range(3) for k in range(96)
                 for r in range(96))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_X.bin").write_bytes(data)
    (folder / f"{split}_y.bin").write_bytes(bytes(label + 1 for label in labels))


def write_stl10(root: Path) -> Written:
    folder = root / "stl10_binary"
    train, test = images(50, 6, 3, 96, 96), images(51, 3, 3, 96, 96)
    stl10_files(folder, "train", train, TRAIN_LABELS)
    stl10_files(folder, "test", test, TEST_LABELS)
    names = tuple(f"s{i}" for i in range(10))
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return Written(root, (train, np.array(TRAIN_LABELS)), (test, np.array(TEST_LABELS)), 10,
                   names)


def write_npz(root: Path) -> Written:
    train, test = images(60, 6, 2, 5, 3), images(61, 3, 2, 5, 3)
    path = root / "data.npz"
    root.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=train, y_train=np.array(TRAIN_LABELS), x_test=test,
             y_test=np.array(TEST_LABELS), class_names=np.array(["a", "b", "c"]))
    return Written(path, (train, np.array(TRAIN_LABELS)), (test, np.array(TEST_LABELS)), 3,
                   ("a", "b", "c"))


def write_idx_set(root: Path, folder: str = "", gz: bool = False) -> Written:
    splits = write_idx(root, folder, gz)
    return Written(root, splits["train"], splits["t10k"], 10, None)


IDX_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashionmnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                     "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

CASES = {  # id: (dataset name, writer, options)
    "mnist": ("mnist", lambda root: write_idx_set(root), {}),
    "mnist-gz-torchvision": ("mnist", lambda root: write_idx_set(root, "MNIST/raw", True), {}),
    "fashionmnist-gz": ("fashionmnist", lambda r: write_idx_set(r, "FashionMNIST/raw", True), {}),
    "kmnist-raw": ("kmnist", lambda root: write_idx_set(root, "raw"), {}),
    "cifar10": ("cifar10", write_cifar10, {}),
    "cifar10-no-meta": ("cifar10", lambda root: write_cifar10(root, names=False), {}),
    "cifar100-fine": ("cifar100", write_cifar100, {}),
    "cifar100-coarse": ("cifar100", lambda r: write_cifar100(r, "coarse"), {"label": "coarse"}),
    "svhn": ("svhn", write_svhn, {}),
    "stl10": ("stl10", write_stl10, {}),
    "npz": ("npz_labels", write_npz, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loader_reads_every_pixel_and_label_exactly(tmp_path, case):
    name, writer, options = CASES[case]
    written = writer(tmp_path)
    splits = load_dataset(name, written.root, **options)
    names = IDX_NAMES.get(name, written.names)
    for split, (imgs, labels) in ((splits.train, written.train), (splits.test, written.test)):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape) == imgs.shape  # (N, C, H, W), channels first
        expected = torch.from_numpy(imgs.astype(np.float32) / np.float32(255))
        assert torch.equal(split.x, expected)
        assert torch.equal(torch.round(split.x * 255).to(torch.uint8), torch.from_numpy(imgs))
        assert split.y.tolist() == labels.tolist()
        assert split.num_classes == written.num_classes and split.class_names == names
        assert 0.0 <= float(split.x.min()) and float(split.x.max()) <= 1.0


@pytest.mark.parametrize("case", ["mnist", "cifar10", "cifar100-fine", "svhn", "stl10", "npz"])
def test_class_subsets_and_per_class_limits(tmp_path, case):
    name, writer, options = CASES[case]
    written = writer(tmp_path)
    full = load_dataset(name, written.root, **options)
    common = sorted(set(written.train[1].tolist()) & set(written.test[1].tolist()))
    old = [common[-1], common[0]]  # two classes in both splits, in reverse order
    sub = load_dataset(name, written.root, classes=old, per_class=1, per_class_test=1,
                       seed=3, **options)
    assert sub.num_classes == 2
    assert list(sub.train.class_counts()) == [1, 1] and list(sub.test.class_counts()) == [1, 1]
    if full.train.class_names:
        assert sub.train.class_names == tuple(full.train.class_names[c] for c in old)
    for new, label in enumerate(old):  # each kept sample is a sample of its old class
        pool = full.train.x[full.train.y == label]
        for sample in sub.train.x[sub.train.y == new]:
            assert any(torch.equal(sample, p) for p in pool)


# --- missing files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", ["train-images-idx3-ubyte[.gz]", "train-labels-idx1-ubyte[.gz]",
                   "t10k-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]", "MNIST/raw"]),
        ("fashionmnist", ["t10k-labels-idx1-ubyte[.gz]", "FashionMNIST/raw"]),
        ("kmnist", ["train-images-idx3-ubyte[.gz]", "KMNIST/raw"]),
        ("cifar10", [f"data_batch_{i}.bin" for i in range(1, 6)]
         + ["test_batch.bin", "cifar-10-batches-bin", "cifar-10-binary.tar.gz"]),
        ("cifar100", ["train.bin", "test.bin", "cifar-100-binary"]),
        ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
        ("stl10", ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "stl10_binary"]),
    ],
)
def test_missing_folder_says_which_files_to_put_where(tmp_path, name, expected):
    absent = tmp_path / "nowhere"
    message = one_line_error("does not exist", load_dataset, name, absent)
    assert str(absent) in message and all(e in message for e in expected)
    empty = tmp_path / "empty"
    empty.mkdir()
    message = one_line_error(f"no {name} files under", load_dataset, name, empty)
    assert all(e in message for e in expected)


def test_missing_file_is_named_among_those_present(tmp_path):
    write_idx(tmp_path, "MNIST/raw", gz=True)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").unlink()
    message = one_line_error("lacks t10k-labels-idx1-ubyte", load_dataset, "mnist", tmp_path)
    assert str(tmp_path / "MNIST/raw") in message and "train-images-idx3-ubyte" in message
    write_stl10(tmp_path / "stl")
    (tmp_path / "stl/stl10_binary/test_y.bin").unlink()
    one_line_error(r"stl10_binary lacks test_y\.bin", load_dataset, "stl10", tmp_path / "stl")


def test_a_root_that_is_a_file_or_no_root_at_all(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    one_line_error("is a file, not a folder", load_dataset, "cifar10", tmp_path / "f")
    one_line_error("give its folder", load_dataset, "svhn")


def test_python_pickle_version_of_cifar_is_not_read(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04")
    one_line_error("binary version", load_dataset, "cifar10", tmp_path)


# --- truncated and corrupt files ---------------------------------------------------------


def test_truncated_idx_names_the_file_and_the_size_from_its_header(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    path.write_bytes(header + bytes(1000 - len(header)))  # MNIST's header, 1,000 bytes
    message = one_line_error("truncated", load_dataset, "mnist", tmp_path)
    assert str(path) in message and "expected 47,040,016 bytes" in message
    assert "found 1,000" in message
    path.write_bytes(header[:10])
    one_line_error("expected at least 16 bytes", load_dataset, "mnist", tmp_path)


def test_truncated_gzip_and_wrong_magic_and_count_mismatch(tmp_path):
    write_idx(tmp_path, gz=True)
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-12])
    one_line_error("t10k-images-idx3-ubyte.gz: corrupt or truncated gzip", load_dataset,
                   "kmnist", tmp_path)
    write_idx(tmp_path / "b")
    labels = tmp_path / "b/train-labels-idx1-ubyte"
    idx_file(labels, (6, 1, 1), TRAIN_LABELS)  # an image file where labels belong
    message = one_line_error("magic number 0x00000803, expected 0x00000801", load_dataset,
                             "mnist", tmp_path / "b")
    assert str(labels) in message
    idx_file(labels, (5,), TRAIN_LABELS[:5])
    one_line_error("holds 6 images but .* holds 5 labels", load_dataset, "mnist", tmp_path / "b")
    idx_file(labels, (6,), [0, 1, 2, 3, 4, 200])
    one_line_error("label 200 outside 0..9", load_dataset, "mnist", tmp_path / "b")
    write_idx(tmp_path / "c")
    write_idx(tmp_path / "d", rows=3, cols=4)
    (tmp_path / "d/t10k-images-idx3-ubyte").replace(tmp_path / "c/t10k-images-idx3-ubyte")
    one_line_error(r"training images are \(4, 3\), test images \(3, 4\)", load_dataset,
                   "mnist", tmp_path / "c")


def test_truncated_cifar_batch(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-bin/data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:1000])
    message = one_line_error("truncated", load_dataset, "cifar10", tmp_path)
    assert str(batch) in message and "multiple of 3,073 bytes" in message
    assert "found 1,000" in message
    batch.write_bytes(batch.read_bytes()[:0])
    one_line_error("found 0", load_dataset, "cifar10", tmp_path)
    # cut at a record boundary: one record where a batch has two
    batch.write_bytes((tmp_path / "cifar-10-batches-bin/data_batch_1.bin").read_bytes()[:3073])
    one_line_error("data_batch_3.bin: truncated: holds 1 records, the standard "
                   "data_batch_3.bin holds 2", load_dataset, "cifar10", tmp_path)


@pytest.mark.parametrize(("case", "name"), [("cifar10", "test_batch.bin"),
                                            ("cifar100-fine", "train.bin"),
                                            ("cifar100-fine", "test.bin")])
def test_single_cifar_file_cut_at_a_record_boundary(tmp_path, case, name):
    """A lone file (no sibling batches to compare with) is checked against its count."""
    dataset, writer, _ = CASES[case]
    writer(tmp_path)
    path = next(tmp_path.rglob(name))
    record = len(path.read_bytes()) // FIXTURE_COUNTS[("cifar", name)]
    path.write_bytes(path.read_bytes()[:-record])  # one whole record less
    message = one_line_error("truncated: holds", load_dataset, dataset, tmp_path)
    assert str(path) in message
    path.write_bytes(path.read_bytes() + path.read_bytes()[:2 * record])  # one more
    one_line_error("too long", load_dataset, dataset, tmp_path)


def test_the_standard_counts_are_those_of_the_published_files():
    assert STANDARD_COUNTS == {
        **{("cifar", f"data_batch_{i}.bin"): 10_000 for i in range(1, 6)},
        ("cifar", "test_batch.bin"): 10_000, ("cifar", "train.bin"): 50_000,
        ("cifar", "test.bin"): 10_000, ("stl10", "train_y.bin"): 5_000,
        ("stl10", "test_y.bin"): 8_000, ("svhn", "train_32x32.mat"): 73_257,
        ("svhn", "test_32x32.mat"): 26_032, ("svhn", "extra_32x32.mat"): 531_131,
    }


def test_cifar100_corrupt_labels_names_and_options(tmp_path):
    write_cifar100(tmp_path)
    folder = tmp_path / "cifar-100-binary"
    test = folder / "test.bin"
    test.write_bytes(test.read_bytes()[:-1])
    message = one_line_error("multiple of 3,074 bytes", load_dataset, "cifar100", tmp_path)
    assert str(test) in message
    cifar_records(test, images(0, 3, 3, 32, 32), [(1, 5), (25, 5), (0, 0)])  # coarse 25 > 19
    load_dataset("cifar100", tmp_path)  # the fine labels are fine
    one_line_error("label 25 outside 0..19", load_dataset, "cifar100", tmp_path, label="coarse")
    one_line_error("'fine' or 'coarse'", load_dataset, "cifar100", tmp_path, label="super")
    (folder / "fine_label_names.txt").write_text("apple\nbee\n")
    one_line_error("lists 2 class names, expected 100", load_dataset, "cifar100", tmp_path)


def test_truncated_stl10_images(tmp_path):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary/train_X.bin"
    path.write_bytes(path.read_bytes()[:1000])
    message = one_line_error("truncated", load_dataset, "stl10", tmp_path)
    assert str(path) in message and "expected 165,888 bytes" in message
    assert "found 1,000" in message and "6 labels of train_y.bin" in message
    write_stl10(tmp_path / "b")
    (tmp_path / "b/stl10_binary/test_y.bin").write_bytes(bytes([3, 0, 4]))
    one_line_error("test_y.bin: label 0 outside 1..10", load_dataset, "stl10", tmp_path / "b")
    (tmp_path / "b/stl10_binary/test_y.bin").write_bytes(bytes([3, 1]))  # cut at a label
    one_line_error(r"test_y\.bin: truncated: holds 2 records, the standard test_y\.bin holds 3",
                   load_dataset, "stl10", tmp_path / "b")


def test_truncated_corrupt_or_wrong_svhn_files(tmp_path):
    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    full = path.read_bytes()
    for cut in (60, 1000, len(full) - 7):
        path.write_bytes(full[:cut])
        message = one_line_error("truncated or corrupt MATLAB file", load_dataset, "svhn",
                                 tmp_path)
        assert str(path) in message and "32x32x3xN" in message
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM")  # an HDF5 header
    one_line_error("MATLAB v7.3", load_dataset, "svhn", tmp_path)
    scipy.io.savemat(path, {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    one_line_error(r"X has shape \(28, 28, 1, 2\)", load_dataset, "svhn", tmp_path)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))})
    one_line_error("y holds 3 values", load_dataset, "svhn", tmp_path)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": [[11]]})
    one_line_error("label 11 outside 0..10", load_dataset, "svhn", tmp_path)
    scipy.io.savemat(path, {"images": np.zeros(3)})
    one_line_error("expected arrays X and y; found images", load_dataset, "svhn", tmp_path)


def test_svhn_file_with_fewer_images_than_the_standard_one(tmp_path):
    write_svhn(tmp_path)
    svhn_mat(tmp_path / "test_32x32.mat", images(41, 2, 3, 32, 32), [1, 2])
    one_line_error(r"test_32x32\.mat: truncated: holds 2 records, the standard test_32x32\.mat "
                   "holds 3", load_dataset, "svhn", tmp_path)


def test_idx_file_with_no_samples_or_empty_images(tmp_path):
    write_idx(tmp_path)
    idx_file(tmp_path / "train-images-idx3-ubyte", (0, 4, 3), [])
    idx_file(tmp_path / "train-labels-idx1-ubyte", (0,), [])
    message = one_line_error("holds no data", load_dataset, "mnist", tmp_path)
    assert "train-images-idx3-ubyte" in message and "0 x 4 x 3 values" in message
    write_idx(tmp_path / "b")
    idx_file(tmp_path / "b/t10k-images-idx3-ubyte", (3, 0, 3), [])
    one_line_error(r"t10k-images-idx3-ubyte: holds no data \(its header gives 3 x 0 x 3",
                   load_dataset, "mnist", tmp_path / "b")


@pytest.mark.parametrize("case", ["cifar10", "cifar100-fine", "stl10"])
def test_names_file_that_is_not_utf8(tmp_path, case):
    dataset, writer, _ = CASES[case]
    writer(tmp_path)
    names = next(p for p in tmp_path.rglob("*.txt") if "fine" in p.name or "coarse" not in p.name)
    names.write_bytes(b"cat\n\xff\xfedog\n" + b"x\n" * 98)
    message = one_line_error("not UTF-8 text", load_dataset, dataset, tmp_path)
    assert str(names) in message and "byte 0xff at offset 4" in message


def test_svhn_extra_is_appended_to_training(tmp_path):
    written = write_svhn(tmp_path)
    one_line_error("lacks extra_32x32.mat", load_dataset, "svhn", tmp_path, extra=True)
    extra = images(42, 2, 3, 32, 32)
    svhn_mat(tmp_path / "extra_32x32.mat", extra, [0, 7])
    splits = load_dataset("svhn", tmp_path, extra=True)
    expected = np.concatenate([written.train[0], extra]).astype(np.float32) / np.float32(255)
    assert torch.equal(splits.train.x, torch.from_numpy(expected))
    assert splits.train.y.tolist() == TRAIN_LABELS + [0, 7]


# --- generic .npz ------------------------------------------------------------------------


def test_npz_channels_layouts_split_and_floats(tmp_path):
    imgs = images(70, 10, 3, 4, 5)
    path = tmp_path / "last.npz"
    np.savez(path, x=imgs.transpose(0, 2, 3, 1), y=np.arange(10) % 4)  # channels last
    splits = load_dataset("npz_labels", path, channels="last", test_fraction=0.3, seed=5)
    assert (len(splits.train), len(splits.test)) == (7, 3) and splits.num_classes == 4
    both = torch.cat([splits.train.x, splits.test.x]) * 255
    labels = torch.cat([splits.train.y, splits.test.y])
    for sample, label in zip(both, labels, strict=True):  # every image, with its label
        n = next(n for n in range(10) if torch.equal(sample.round(), torch.from_numpy(
            imgs[n].astype(np.float32))))
        assert label == n % 4
    again = load_dataset("npz_labels", path, channels="last", test_fraction=0.3, seed=5)
    assert torch.equal(again.test.x, splits.test.x)
    np.savez(path, x_train=imgs[:, 0], y_train=np.arange(10) % 2,
             x_test=imgs[:2, 0], y_test=np.array([[1], [0]], np.int64))
    splits = load_dataset("npz_labels", path, channels="none")
    assert splits.input_shape == (1, 4, 5) and splits.test.y.tolist() == [1, 0]
    feats = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float64)
    np.savez(path, x=feats, y=np.array([0, 0, 1, 1, 0, 1, 0, 1]))  # both classes in the test
    splits = load_dataset("npz_labels", path, test_fraction=0.25)
    got = torch.cat([splits.train.x, splits.test.x]).numpy()
    assert sorted(map(tuple, got)) == sorted(map(tuple, feats.astype(np.float32)))


def test_npz_bad_input(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([object()], dtype=object), y=np.zeros(1))
    one_line_error("pickled", load_dataset, "npz_labels", path)
    np.savez(path, x_train=np.zeros((2, 3)), y_train=np.zeros(2, np.int64))
    one_line_error("lacks x_test, y_test", load_dataset, "npz_labels", path)
    np.savez(path, images=np.zeros((2, 3)))
    one_line_error("expected arrays x_train.*found images", load_dataset, "npz_labels", path)
    np.savez(path, x=np.full((4, 3), 300), y=np.zeros(4, np.int64))
    one_line_error("x holds integers outside 0..255", load_dataset, "npz_labels", path)
    np.savez(path, x=np.full((4, 3), np.nan), y=np.zeros(4, np.int64))
    one_line_error("NaN", load_dataset, "npz_labels", path)
    np.savez(path, x=np.zeros((4, 3)), y=np.zeros(4))
    one_line_error("expected integer labels", load_dataset, "npz_labels", path)
    np.savez(path, x=np.zeros((4, 3)), y=np.zeros(5, np.int64))
    one_line_error("expected N >= 2 samples and N labels", load_dataset, "npz_labels", path)
    np.savez(path, x=np.zeros((4, 3)), y=np.arange(4), class_names=np.array(["a", "b"]))
    one_line_error("class_names lists 2 names but labels reach 3", load_dataset, "npz_labels", path)
    one_line_error("channels must be one of", load_dataset, "npz_labels", path, channels="hwc")
    one_line_error(r"is a folder \(d\.npz\); give the \.npz file", load_dataset, "npz_labels",
                   tmp_path)
    one_line_error("no such file", load_dataset, "npz_labels", tmp_path / "absent.npz")


def test_npz_labels_reads_renamed_keys(tmp_path):
    feats = np.random.default_rng(1).normal(size=(12, 5))
    labels = np.arange(12) % 3
    path = tmp_path / "renamed.npz"
    np.savez(path, x=feats, y=labels)
    plain = load_dataset("npz_labels", path, test_fraction=0.25, seed=2)
    np.savez(path, features=feats, labels=labels)
    renamed = load_dataset("npz_labels", path, test_fraction=0.25, seed=2,
                           x_key="features", y_key="labels")
    for split in ("train", "test"):  # the same draw as under the default names
        assert torch.equal(getattr(renamed, split).x, getattr(plain, split).x)
        assert torch.equal(getattr(renamed, split).y, getattr(plain, split).y)
    np.savez(path, h_train=feats[:9], c_train=labels[:9], h_test=feats[9:], c_test=labels[9:])
    stored = load_dataset("npz_labels", path, x_key="h", y_key="c")
    assert stored.test.y.tolist() == labels[9:].tolist() and len(stored.train) == 9
    one_line_error("expected arrays x_train, y_train, x_test, y_test, or x and y; found "
                   "c_test", load_dataset, "npz_labels", path)
    one_line_error("expected arrays q_train, r_train, q_test, r_test, or q and r",
                   load_dataset, "npz_labels", path, x_key="q", y_key="r")
    one_line_error("has h_train, h_test but lacks y_train, y_test", load_dataset,
                   "npz_labels", path, x_key="h")
    one_line_error("x_key and y_key must differ", load_dataset, "npz_labels", path,
                   x_key="h", y_key="h")
    one_line_error("x_key must be an array name", load_dataset, "npz_labels", path, x_key="")


def test_registry_lists_every_file_loader_as_needing_a_root():
    for name in ("mnist", "fashionmnist", "kmnist", "cifar10", "cifar100", "svhn", "stl10",
                 "npz_labels", "npz_targets"):
        assert DATASETS[name].needs_root is True


def test_root_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_idx(tmp_path / "data")
    assert len(load_dataset("mnist", "~/data").train) == 6


def test_unknown_options_list_the_ones_a_dataset_takes(tmp_path):
    one_line_error("dataset 'mnist' has no option label; its options: none", load_dataset,
                   "mnist", tmp_path, label="coarse")
    one_line_error("dataset 'cifar100' has no option extra; its options: label", load_dataset,
                   "cifar100", tmp_path, extra=True)
    one_line_error("'gaussian' has no option colour; its options: num_classes, dim",
                   load_dataset, "gaussian", colour=1)


# --- bounded decompression (every compressed reader) ------------------------------------


def test_an_idx_gz_is_bounded_by_its_header_before_it_is_decompressed(tmp_path, monkeypatch):
    import nclab.data.files

    small = tmp_path / "train-images-idx3-ubyte.gz"  # declares 1 GB of pixels in 1 KB
    small.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + b"".join(
        d.to_bytes(4, "big") for d in (1_000_000, 32, 32)) + bytes(1000)))
    real_gunzip = nclab.data.files._gunzip
    asked = []

    def gunzip(path, size):
        asked.append(size)
        return real_gunzip(path, size)

    monkeypatch.setattr(nclab.data.files, "_gunzip", gunzip)
    message = one_line_error("decompression bomb", idx.read_idx, small, 3)
    assert "1,000,000 x 32 x 32 values (1,024,000,016 bytes, from its header)" in message
    assert asked == [16]  # the header, nothing more
    lying = tmp_path / "t10k-labels-idx1-ubyte.gz"  # the header says 3 values, it holds 10 MB
    lying.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
                                    + bytes(10_000_000)))
    asked.clear()
    one_line_error("decompresses to more than the 11 bytes its header declares", idx.read_idx,
                   lying, 1)
    assert asked == [8, 12]  # stopped one byte past what the header allows


def test_an_svhn_file_whose_variables_inflate_too_far_is_refused_before_scipy(tmp_path,
                                                                             monkeypatch):
    import nclab.core.io

    write_svhn(tmp_path)
    x = np.zeros((32, 32, 3, 400), np.uint8)  # 1.2 MB of zeros: a few KB compressed
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.ones((400, 1))},
                     do_compression=True)
    monkeypatch.setattr(nclab.core.io, "FREE_EXPANSION", 2**16)  # a bomb of test size

    def never(*args, **kwargs):
        raise AssertionError("scipy inflated it")

    with monkeypatch.context() as patched:
        patched.setattr(scipy.io, "loadmat", never)
        message = one_line_error("decompression bomb", load_dataset, "svhn", tmp_path)
    assert "train_32x32.mat: its compressed variables (more than" in message
    compressed = tmp_path / "real"  # the real files compress about 1.2:1: read as ever
    compressed.mkdir()
    imgs = images(42, 6, 3, 32, 32)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        y = np.array([[d or 10] for d in TRAIN_LABELS[:6 if "train" in name else 3]], np.uint8)
        scipy.io.savemat(compressed / name, {"X": np.ascontiguousarray(
            imgs[:len(y)].transpose(2, 3, 1, 0)), "y": y}, do_compression=True)
    assert len(load_dataset("svhn", compressed).train) == 6


@pytest.mark.parametrize(("y", "message"), [
    (np.array([[1 + 2j], [2], [3]]), r"y holds complex numbers \(complex128\)"),
    (np.array([[1e20], [2], [3]]), r"label 1e\+20 outside 0..10"),
    (np.array([[2**64 - 1], [2], [3]], np.uint64), "label 18446744073709551615 outside"),
])
def test_svhn_labels_that_are_not_real_or_too_large_are_named_as_they_are(tmp_path, y,
                                                                          message):
    write_svhn(tmp_path)
    x = np.zeros((32, 32, 3, 3), np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    one_line_error(message, load_dataset, "svhn", tmp_path)


# --- what the registry refuses before any builder runs ---------------------------------------


@pytest.mark.parametrize("name", ["mnist1d", "digits", "gaussian", "teacher"])
def test_a_root_given_to_a_generated_set_is_refused(tmp_path, name):
    one_line_error(f"dataset '{name}' is generated, not read from files: it takes no root",
                   load_dataset, name, tmp_path)


def test_an_empty_root_is_refused_not_taken_as_the_current_folder(tmp_path, monkeypatch):
    write_idx_set(tmp_path)
    monkeypatch.chdir(tmp_path)  # the files are there: '' would read them
    one_line_error("its root \\(--root\\) is empty", load_dataset, "mnist", "")


@pytest.mark.parametrize(("options", "split"), [
    ({"num_classes": 1}, "train"), ({"classes": [2]}, "train"),
])
def test_a_split_with_one_class_is_refused(options, split):
    message = one_line_error(f"the {split} split of dataset 'gaussian' holds samples of only "
                             "1 class", load_dataset, "gaussian", dim=4, **options)
    assert "need at least 2" in message


def test_a_name_too_long_or_not_utf8_as_root_is_one_line(tmp_path):
    one_line_error(r"cannot read \(File name too long\)", load_dataset, "mnist",
                   tmp_path / ("a" * 300))
    message = one_line_error("does not exist", load_dataset, "cifar10",
                             tmp_path / os.fsdecode(b"caf\xe9"))
    message.encode("ascii")


@pytest.mark.parametrize(("name", "option"), [("gaussian", "dim"), ("mnist1d", "num_samples")])
def test_an_integer_option_beyond_64_bits_is_refused_before_the_builder_runs(name, option):
    one_line_error(f"dataset '{name}' option {option} must fit a 64-bit integer; got {2**70}",
                   load_dataset, name, **{option: 2**70})
