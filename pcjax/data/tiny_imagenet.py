"""Tiny-ImageNet-200 from the unpacked ``tiny-imagenet-200.zip``.

Layout: ``ROOT/tiny_imagenet/tiny-imagenet-200/`` with ``wnids.txt``, ``words.txt``,
``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt``. The 10,000 labelled ``val`` images serve as the test set (the
official ``test`` images have no labels). Class ``i`` is the ``i``-th wnid in sorted order; training
images are ordered by class, then by file name (natural order); test images follow
``val_annotations.txt``. Images are 64x64 RGB JPEGs (a few are greyscale and are converted
to RGB); decoding needs Pillow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pcjax.data.dataset import ArrayDataset, DatasetError
from pcjax.data.download import DatasetSource, fetch

__all__ = ["load_tiny_imagenet", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SIZE = 64


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _decode(paths: list[Path]) -> np.ndarray:
    """Decode JPEG files into a ``(N, 64, 64, 3)`` uint8 array."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Tiny-ImageNet needs Pillow to decode JPEG files: pip install pillow") from e
    out = np.empty((len(paths), _SIZE, _SIZE, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise DatasetError(f"cannot decode {p}: {e}") from e
        if arr.shape != (_SIZE, _SIZE, 3):
            raise DatasetError(f"{p}: expected a {_SIZE}x{_SIZE} image, got {arr.shape[:2]}")
        out[i] = arr
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        return [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from e


def load_tiny_imagenet(root: Path, *, download: bool = True, limit_train: int | None = None,
                       limit_test: int | None = None, mirror: str | None = None,
                       registry: Mapping[str, DatasetSource] | None = None) -> ArrayDataset:
    """Tiny-ImageNet-200: 100,000 train + 10,000 labelled val (used as test) 64x64x3 images.

    Normalisation stats are ImageNet's: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    Only the first ``limit_train`` / ``limit_test`` files are decoded.
    """
    base = fetch("tiny_imagenet", root, download=download, mirror=mirror, registry=registry) / "tiny-imagenet-200"
    wnids = sorted(_read_lines(base / "wnids.txt"))
    index = {w: i for i, w in enumerate(wnids)}
    words: dict[str, str] = {}
    if (base / "words.txt").exists():
        for ln in _read_lines(base / "words.txt"):
            wnid, _, text = ln.partition("\t")
            words[wnid] = text.strip()
    classes = tuple(words.get(w, w) for w in wnids)

    train: list[tuple[Path, int]] = []
    for w in wnids:
        files = sorted((base / "train" / w / "images").glob("*.JPEG"), key=lambda p: _natural_key(p.name))
        if not files:
            raise DatasetError(f"{base / 'train' / w / 'images'} holds no .JPEG images")
        train.extend((p, index[w]) for p in files)
    test: list[tuple[Path, int]] = []
    for ln in _read_lines(base / "val" / "val_annotations.txt"):
        fields = ln.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DatasetError(f"{base / 'val' / 'val_annotations.txt'}: bad line {ln!r}")
        test.append((base / "val" / "images" / fields[0], index[fields[1]]))

    if (limit_train is not None and limit_train < 0) or (limit_test is not None and limit_test < 0):
        raise ValueError("limits must be >= 0")
    train = train[:limit_train] if limit_train is not None else train
    test = test[:limit_test] if limit_test is not None else test
    train_x = _decode([p for p, _ in train])
    test_x = _decode([p for p, _ in test])
    train_y = np.array([c for _, c in train], np.int32)
    test_y = np.array([c for _, c in test], np.int32)
    return ArrayDataset("tiny_imagenet", train_x, train_y, test_x, test_y, len(wnids),
                        IMAGENET_MEAN, IMAGENET_STD, classes)
