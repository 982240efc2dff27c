"""Checks on the real datasets, read from ``$PCJAX_DATA_DIR`` in their canonical layout.

Skipped (with the reason) when ``PCJAX_DATA_DIR`` is unset or lacks a dataset's files. Nothing is
downloaded here (``download=False``); IDX files are still SHA-256 verified on load.

About CIFAR-10's std: the customary normalisation std (0.2023, 0.1994, 0.2010) is a historical
value; the per-channel std over all training pixels is about (0.2470, 0.2435, 0.2616), which is
what is tested, while the mean is tested against the published (0.4914, 0.4822, 0.4465).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pcjax.data import channel_stats, load_dataset

ROOT = os.environ.get("PCJAX_DATA_DIR")

REQUIRED = {
    "mnist": ["mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz",
              "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"],
    "fashion_mnist": ["fashion_mnist/train-images-idx3-ubyte.gz", "fashion_mnist/train-labels-idx1-ubyte.gz",
                      "fashion_mnist/t10k-images-idx3-ubyte.gz", "fashion_mnist/t10k-labels-idx1-ubyte.gz"],
    "cifar10": [f"cifar10/cifar-10-batches-py/{f}" for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta")],
    "cifar100": [f"cifar100/cifar-100-python/{f}" for f in ("train", "test", "meta")],
    "tiny_imagenet": [f"tiny_imagenet/tiny-imagenet-200/{f}" for f in ("wnids.txt", "val/val_annotations.txt")],
}


def real(name: str):
    """Load ``name`` from $PCJAX_DATA_DIR or skip with the reason."""
    if not ROOT:
        pytest.skip("PCJAX_DATA_DIR is not set: real-data checks need the canonical files under it")
    missing = [p for p in REQUIRED[name] if not (Path(ROOT) / p).exists()]
    if missing:
        pytest.skip(f"{name} not found under PCJAX_DATA_DIR={ROOT} (missing {missing[0]})")
    return load_dataset(name, ROOT, download=False)


def test_mnist():
    ds = real("mnist")
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # original order
    mean, std = channel_stats(ds.train_x)
    assert abs(mean[0] - 0.1307) < 5e-4 and abs(std[0] - 0.3081) < 5e-4


def test_fashion_mnist():
    ds = real("fashion_mnist")
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.train_y).tolist() == [6000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
    mean, std = channel_stats(ds.train_x)
    assert abs(mean[0] - 0.2860) < 5e-4 and abs(std[0] - 0.3530) < 5e-4


def test_cifar10():
    ds = real("cifar10")
    assert ds.train_x.shape == (50000, 32, 32, 3) and ds.test_x.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.train_y).tolist() == [5000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.classes == ("airplane", "automobile", "bird", "cat", "deer",
                          "dog", "frog", "horse", "ship", "truck")
    mean, std = channel_stats(ds.train_x)
    np.testing.assert_allclose(mean, (0.4914, 0.4822, 0.4465), atol=0.002)
    np.testing.assert_allclose(std, (0.2470, 0.2435, 0.2616), atol=0.002)
    # channel order: the "sky" of airplanes is bluer than red, so B - R > 0 there on average
    planes = ds.train_x[ds.train_y == 0].astype(np.float64)
    assert planes[..., 2].mean() > planes[..., 0].mean()


def test_cifar100():
    fine = real("cifar100")
    assert fine.train_x.shape == (50000, 32, 32, 3) and fine.test_x.shape == (10000, 32, 32, 3)
    assert np.bincount(fine.train_y).tolist() == [500] * 100
    coarse = load_dataset("cifar100", ROOT, download=False, label_mode="coarse")
    assert np.bincount(coarse.train_y).tolist() == [2500] * 20
    mean, _ = channel_stats(fine.train_x)
    np.testing.assert_allclose(mean, (0.5071, 0.4867, 0.4408), atol=0.002)


def test_tiny_imagenet():
    pytest.importorskip("PIL", reason="Pillow is needed to decode Tiny-ImageNet JPEGs")
    ds = real("tiny_imagenet")
    assert ds.train_x.shape == (100000, 64, 64, 3) and ds.test_x.shape == (10000, 64, 64, 3)
    assert np.bincount(ds.train_y).tolist() == [500] * 200
    assert np.bincount(ds.test_y).tolist() == [50] * 200
