"""MNIST and Fashion-MNIST from their canonical IDX ``.gz`` files.

Layout: ``ROOT/mnist/`` and ``ROOT/fashion_mnist/`` each hold ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pcjax.data.dataset import ArrayDataset, DatasetError, take_first
from pcjax.data.download import DatasetSource, fetch

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "MNIST_CLASSES", "FASHION_MNIST_CLASSES"]

# IDX type codes (third magic byte) -> numpy dtype; multi-byte values are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``) into a numpy array.

    Header: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions ``d``,
    then ``d`` big-endian uint32 sizes; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) != header + int(np.prod(shape)) * dtype.itemsize:
        raise DatasetError(f"{path}: IDX header says shape {shape} but the file has {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _load_split(ddir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(ddir / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(ddir / f"{prefix}-labels-idx1-ubyte.gz")
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{ddir}: {prefix} images {x.shape} and labels {y.shape} do not match")
    return x.astype(np.uint8)[..., None], y.astype(np.int32)


def _load(name: str, root: Path, classes: tuple[str, ...], mean: float, std: float, *,
          download: bool, limit_train: int | None, limit_test: int | None,
          mirror: str | None, registry: Mapping[str, DatasetSource] | None) -> ArrayDataset:
    ddir = fetch(name, root, download=download, mirror=mirror, registry=registry)
    train_x, train_y = take_first(*_load_split(ddir, "train"), limit_train)
    test_x, test_y = take_first(*_load_split(ddir, "t10k"), limit_test)
    for y in (train_y, test_y):
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DatasetError(f"{ddir}: labels outside [0, {len(classes)})")
    return ArrayDataset(name, train_x, train_y, test_x, test_y, len(classes), (mean,), (std,), classes)


def load_mnist(root: Path, *, download: bool = True, limit_train: int | None = None,
               limit_test: int | None = None, mirror: str | None = None,
               registry: Mapping[str, DatasetSource] | None = None) -> ArrayDataset:
    """MNIST: 60,000 + 10,000 grey 28x28 digits, shape ``(N, 28, 28, 1)``; mean 0.1307, std 0.3081."""
    return _load("mnist", root, MNIST_CLASSES, 0.1307, 0.3081, download=download,
                 limit_train=limit_train, limit_test=limit_test, mirror=mirror, registry=registry)


def load_fashion_mnist(root: Path, *, download: bool = True, limit_train: int | None = None,
                       limit_test: int | None = None, mirror: str | None = None,
                       registry: Mapping[str, DatasetSource] | None = None) -> ArrayDataset:
    """Fashion-MNIST: 60,000 + 10,000 grey 28x28 clothing images; mean 0.2860, std 0.3530."""
    return _load("fashion_mnist", root, FASHION_MNIST_CLASSES, 0.2860, 0.3530, download=download,
                 limit_train=limit_train, limit_test=limit_test, mirror=mirror, registry=registry)
