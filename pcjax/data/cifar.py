"""CIFAR-10 and CIFAR-100 from the canonical python pickles.

Layout: ``ROOT/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``ROOT/cifar100/cifar-100-python/{train, test, meta}``, as unpacked from the official
``cifar-*-python.tar.gz`` archives. The original pickles were written by Python 2 and have
``bytes`` keys (``b'data'``, ``b'labels'``, ...) when read with ``encoding='bytes'``; copies
re-written by Python 3 have ``str`` keys. Both are accepted. Each ``data`` row holds 3072 bytes,
channel-major (1024 red, 1024 green, 1024 blue, each 32x32 row-major), so rows are reshaped to
``(N, 3, 32, 32)`` and transposed to NHWC.

Only open pickles you trust: unpickling can run code. The files are read from the data root,
which the archive download fills after SHA-256 verification.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pcjax.data.dataset import ArrayDataset, DatasetError, take_first
from pcjax.data.download import DatasetSource, fetch

__all__ = ["load_cifar10", "load_cifar100", "read_pickle", "rows_to_nhwc"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
# The customary CIFAR-10 normalisation std. It is a historical value: the per-channel std of all
# training pixels is about (0.2470, 0.2435, 0.2616); (0.2023, 0.1994, 0.2010) is kept because it
# is what published training recipes use.
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


def read_pickle(path: Path) -> dict[str, Any]:
    """Unpickle a CIFAR file and return its dict with all keys as ``str``."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise DatasetError(f"cannot read CIFAR pickle {path}: {e}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: Any) -> tuple[str, ...]:
    return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values)


def rows_to_nhwc(data: Any, path: Path | str = "<data>") -> np.ndarray:
    """``(N, 3072)`` channel-major uint8 rows -> ``(N, 32, 32, 3)`` uint8 NHWC images."""
    arr = np.asarray(data, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' must be N x 3072, got {arr.shape}")
    return np.ascontiguousarray(arr.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_batches(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        d = read_pickle(p)
        if "data" not in d or label_key not in d:
            raise DatasetError(f"{p}: missing key 'data' or {label_key!r} (has {sorted(d)})")
        x = rows_to_nhwc(d["data"], p)
        y = np.asarray(d[label_key], dtype=np.int32).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise DatasetError(f"{p}: {x.shape[0]} images but {y.shape[0]} labels")
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _check_labels(y: np.ndarray, n: int, where: Path) -> None:
    if y.size and (y.min() < 0 or y.max() >= n):
        raise DatasetError(f"{where}: labels outside [0, {n})")


def load_cifar10(root: Path, *, download: bool = True, limit_train: int | None = None,
                 limit_test: int | None = None, mirror: str | None = None,
                 registry: Mapping[str, DatasetSource] | None = None) -> ArrayDataset:
    """CIFAR-10: 50,000 + 10,000 RGB 32x32 images in 10 classes (train = data_batch_1..5 in order)."""
    ddir = fetch("cifar10", root, download=download, mirror=mirror, registry=registry) / "cifar-10-batches-py"
    classes = _names(read_pickle(ddir / "batches.meta")["label_names"])
    train_x, train_y = take_first(*_read_batches([ddir / f"data_batch_{i}" for i in range(1, 6)], "labels"),
                                  limit_train)
    test_x, test_y = take_first(*_read_batches([ddir / "test_batch"], "labels"), limit_test)
    _check_labels(train_y, len(classes), ddir)
    _check_labels(test_y, len(classes), ddir)
    return ArrayDataset("cifar10", train_x, train_y, test_x, test_y, len(classes),
                        CIFAR10_MEAN, CIFAR10_STD, classes)


def load_cifar100(root: Path, *, download: bool = True, limit_train: int | None = None,
                  limit_test: int | None = None, label_mode: str = "fine", mirror: str | None = None,
                  registry: Mapping[str, DatasetSource] | None = None) -> ArrayDataset:
    """CIFAR-100: 50,000 + 10,000 RGB 32x32 images.

    ``label_mode="fine"`` gives the 100 fine classes, ``"coarse"`` the 20 superclasses
    (dataset name ``cifar100-coarse``).
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    ddir = fetch("cifar100", root, download=download, mirror=mirror, registry=registry) / "cifar-100-python"
    classes = _names(read_pickle(ddir / "meta")[f"{label_mode}_label_names"])
    key = f"{label_mode}_labels"
    train_x, train_y = take_first(*_read_batches([ddir / "train"], key), limit_train)
    test_x, test_y = take_first(*_read_batches([ddir / "test"], key), limit_test)
    _check_labels(train_y, len(classes), ddir)
    _check_labels(test_y, len(classes), ddir)
    name = "cifar100" if label_mode == "fine" else "cifar100-coarse"
    return ArrayDataset(name, train_x, train_y, test_x, test_y, len(classes),
                        CIFAR100_MEAN, CIFAR100_STD, classes)
