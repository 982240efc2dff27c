"""In-memory image datasets, the dataset registry and host-side helpers.

Every loader returns an :class:`ArrayDataset`: uint8 images in NHWC layout and int32 labels,
kept on the host so that the training code can move them to the device once
(see :mod:`pcjax.data.pipeline` for device-side batching and augmentation).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcjax.errors import PCJaxError

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DatasetError",
    "LabelError",
    "channel_stats",
    "data_root",
    "load_dataset",
    "split_validation",
]

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = (
    "digits",
    "synthetic",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "tiny_imagenet",
)

# name -> "module:function" (imported lazily so that e.g. Pillow is only needed for Tiny-ImageNet)
_LOADERS: dict[str, str] = {
    "digits": "pcjax.data.digits:load_digits",
    "synthetic": "pcjax.data.synthetic:load_synthetic",
    "mnist": "pcjax.data.idx:load_mnist",
    "fashion_mnist": "pcjax.data.idx:load_fashion_mnist",
    "cifar10": "pcjax.data.cifar:load_cifar10",
    "cifar100": "pcjax.data.cifar:load_cifar100",
    "tiny_imagenet": "pcjax.data.tiny_imagenet:load_tiny_imagenet",
}

DEFAULT_ROOT = Path("~/.cache/pcjax")


class DatasetError(PCJaxError):
    """A dataset file is missing, corrupt, fails verification or cannot be downloaded (a RuntimeError)."""


class LabelError(DatasetError, ValueError):
    """Labels outside ``[0, num_classes)`` (names the split, the count and the bad values)."""


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled image dataset held in host memory.

    Attributes:
        name: dataset name (one of :data:`DATASETS`, possibly with a suffix such as ``cifar100-coarse``).
        train_x: uint8 array ``(N, H, W, C)``.
        train_y: int32 array ``(N,)`` with values in ``[0, num_classes)``.
        test_x: uint8 array ``(M, H, W, C)``.
        test_y: int32 array ``(M,)``.
        num_classes: number of classes.
        mean: per-channel mean in ``[0, 1]`` pixel units, used by :func:`pcjax.data.pipeline.normalize`.
        std: per-channel standard deviation in ``[0, 1]`` pixel units.
        classes: human-readable class names, ``len(classes) == num_classes``.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: {split}_x must be uint8 NHWC, got {x.dtype} {x.shape}")
            if y.dtype != np.int32 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: {split}_y must be int32 of shape ({x.shape[0]},)")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train and test images differ in shape")
        c = self.train_x.shape[-1]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"{self.name}: mean/std need {c} channel values")
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")
        for split in ("train", "test"):
            y = getattr(self, f"{split}_y")
            bad = (y < 0) | (y >= self.num_classes)
            if bad.any():
                values = np.unique(y[bad])
                shown = ", ".join(str(int(v)) for v in values[:5]) + (", ..." if values.size > 5 else "")
                raise LabelError(
                    f"{self.name}: {int(bad.sum())} of the {y.shape[0]} {split} labels lie outside "
                    f"[0, {self.num_classes}) (num_classes={self.num_classes}); first bad value "
                    f"{int(y[bad][0])} at index {int(np.argmax(bad))}; bad values: {shown}. Labels must be "
                    "class indices 0 .. num_classes-1 (an out-of-range label has no one-hot target)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        h, w, c = self.train_x.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.test_x.shape[0])


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root: ``root`` if given, else ``$PCJAX_DATA_DIR``, else ``~/.cache/pcjax``."""
    if root is None:
        root = os.environ.get("PCJAX_DATA_DIR") or DEFAULT_ROOT
    return Path(root).expanduser()


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 NHWC images in ``[0, 1]`` units.

    ``mean_c = sum(x[..., c]) / (255 n)``, ``std_c = sqrt(sum(x[..., c]^2) / (255^2 n) - mean_c^2)``,
    accumulated in float64 over chunks of ``chunk`` images to bound memory.
    """
    c = x.shape[-1]
    s = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].reshape(-1, c).astype(np.float64)
        s += part.sum(0)
        s2 += np.square(part).sum(0)
    n = float(np.prod(x.shape[:-1]))
    mean = s / (255.0 * n)
    std = np.sqrt(np.maximum(s2 / (255.0**2 * n) - mean**2, 0.0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    limit_train: int | None = None,
    limit_test: int | None = None,
    **options: Any,
) -> ArrayDataset:
    """Load a dataset by name into host memory.

    Args:
        name: one of :data:`DATASETS`.
        root: data root (see :func:`data_root`); files are read from its canonical layout,
            e.g. ``ROOT/mnist/train-images-idx3-ubyte.gz``.
        download: fetch missing files from the canonical URLs (SHA-256 verified). With
            ``download=False`` or ``PCJAX_OFFLINE=1`` a missing file raises :class:`DatasetError`.
        limit_train: keep only the first ``limit_train`` training examples (deterministic).
        limit_test: keep only the first ``limit_test`` test examples.
        **options: loader-specific options, e.g. ``label_mode="coarse"`` for ``cifar100``,
            ``mirror=URL`` (download base, also ``$PCJAX_DATA_MIRROR``) for file-backed datasets,
            ``n_train``/``image_shape``/... for ``synthetic``. ``digits`` and ``synthetic`` need no
            files: ``root`` and ``download`` are ignored for them.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
        DatasetError: files missing, failing verification or not downloadable.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    module, func = _LOADERS[name].split(":")
    loader = getattr(importlib.import_module(module), func)
    if name in ("digits", "synthetic"):
        ds = loader(limit_train=limit_train, limit_test=limit_test, **options)
    else:
        ds = loader(data_root(root), download=download, limit_train=limit_train,
                    limit_test=limit_test, **options)
    return ds


def take_first(x: np.ndarray, y: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the first ``limit`` examples (all of them when ``limit`` is None)."""
    if limit is None:
        return x, y
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return x[:limit], y[:limit]


def split_validation(
    ds: ArrayDataset, fraction: float, seed: int
) -> tuple[ArrayDataset, tuple[np.ndarray, np.ndarray]]:
    """Hold out a random fraction of the training set for validation.

    ``n_val = round(fraction * N)`` examples are chosen by ``np.random.default_rng(seed).permutation(N)``;
    both parts keep their original relative order. Returns ``(train_ds, (val_x, val_y))`` where
    ``train_ds`` is a new :class:`ArrayDataset` whose ``train_x``/``train_y`` are the remaining
    examples (test split, mean/std and classes unchanged). ``fraction == 0`` gives empty
    validation arrays. Deterministic for a given ``seed``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n = ds.num_train
    n_val = int(round(fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train = dataclasses.replace(ds, train_x=ds.train_x[train_idx], train_y=ds.train_y[train_idx])
    return train, (ds.train_x[val_idx], ds.train_y[val_idx])
