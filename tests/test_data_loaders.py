"""Loaders read each dataset's canonical file format exactly (fixtures written in tmp dirs)."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util

import numpy as np
import pytest

from pcjax.data import DATASETS, ArrayDataset, DatasetError, channel_stats, data_root, load_dataset, split_validation
from pcjax.data.idx import read_idx

try:
    import data_fixtures as fx
except ImportError:  # tests/ imported as a package
    from tests import data_fixtures as fx

HAVE_PIL = importlib.util.find_spec("PIL") is not None


def nhwc(rows: np.ndarray) -> np.ndarray:
    """Reference conversion written pixel by pixel: x[n, i, j, c] = row[n, c*1024 + i*32 + j]."""
    n = rows.shape[0]
    out = np.zeros((n, 32, 32, 3), np.uint8)
    for c in range(3):
        for i in range(32):
            out[:, i, :, c] = rows[:, c * 1024 + i * 32 : c * 1024 + i * 32 + 32]
    return out


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

def test_read_idx_roundtrip_and_magic(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    fx.write_idx_gz(tmp_path / "a.gz", arr)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes())[:4] == b"\x00\x00\x08\x03"
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x03" + bytes(16)))
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "short.gz").write_bytes(gzip.compress(fx.idx_bytes(arr)[:-1]))
    with pytest.raises(DatasetError, match="shape"):
        read_idx(tmp_path / "short.gz")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_datasets_exact(tmp_path, name):
    arrays = fx.write_mnist_like(tmp_path / name, seed=3)
    reg = {name: fx.idx_source(name, tmp_path / name, "http://unused.invalid")}
    ds = load_dataset(name, tmp_path, download=False, registry=reg)
    assert ds.name == name and ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int32
    np.testing.assert_array_equal(ds.train_x[..., 0], arrays["train_x"])
    np.testing.assert_array_equal(ds.train_y, arrays["train_y"])
    np.testing.assert_array_equal(ds.test_x[..., 0], arrays["test_x"])
    np.testing.assert_array_equal(ds.test_y, arrays["test_y"])
    expected = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}[name]
    assert (ds.mean[0], ds.std[0]) == expected
    assert (ds.classes[0] == "0") == (name == "mnist")
    small = load_dataset(name, tmp_path, download=False, registry=reg, limit_train=5, limit_test=2)
    np.testing.assert_array_equal(small.train_x, ds.train_x[:5])
    np.testing.assert_array_equal(small.test_y, ds.test_y[:2])


def test_idx_bad_labels_rejected(tmp_path):
    fx.write_mnist_like(tmp_path / "mnist")
    fx.write_idx_gz(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4, 5, 10], np.uint8))
    reg = {"mnist": fx.idx_source("mnist", tmp_path / "mnist", "http://unused.invalid")}
    with pytest.raises(DatasetError, match="labels"):
        load_dataset("mnist", tmp_path, download=False, registry=reg)


# ---------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_pickles(tmp_path, bytes_keys):
    ref = fx.write_cifar10(tmp_path / "cifar10", bytes_keys)
    ds = load_dataset("cifar10", tmp_path, download=False)
    assert ds.train_x.shape == (15, 32, 32, 3) and ds.test_x.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_x, nhwc(ref["train_rows"]))
    np.testing.assert_array_equal(ds.train_y, ref["train_y"])
    np.testing.assert_array_equal(ds.test_x, nhwc(ref["test_rows"]))
    np.testing.assert_array_equal(ds.test_y, ref["test_y"])
    assert ds.classes == ref["classes"] and ds.num_classes == 10
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)
    # pixel (i=1, j=2) of channel 1 (green) of image 0 is byte 1024 + 1*32 + 2 of its row
    assert ds.train_x[0, 1, 2, 1] == ref["train_rows"][0, 1024 + 34]
    lim = load_dataset("cifar10", tmp_path, download=False, limit_train=4, limit_test=1)
    np.testing.assert_array_equal(lim.train_x, ds.train_x[:4])
    assert lim.test_x.shape[0] == 1


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar100_fine_and_coarse(tmp_path, bytes_keys):
    ref = fx.write_cifar100(tmp_path / "cifar100", bytes_keys)
    fine = load_dataset("cifar100", tmp_path, download=False)
    coarse = load_dataset("cifar100", tmp_path, download=False, label_mode="coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.classes == ref["fine"] and coarse.classes == ref["coarse"]
    np.testing.assert_array_equal(fine.train_x, nhwc(ref["train_rows"]))
    np.testing.assert_array_equal(fine.test_x, nhwc(ref["test_rows"]))
    np.testing.assert_array_equal(fine.train_y, ref["train_fine"])
    np.testing.assert_array_equal(coarse.train_y, ref["train_coarse"])
    np.testing.assert_array_equal(coarse.test_y, ref["test_coarse"])
    assert fine.mean == (0.5071, 0.4867, 0.4408) and fine.std == (0.2675, 0.2565, 0.2761)
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("cifar100", tmp_path, download=False, label_mode="medium")


def test_cifar_missing_key_is_clear(tmp_path):
    fx.write_cifar10(tmp_path / "cifar10", bytes_keys=True)
    fx._dump(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", {"data": np.zeros((1, 3072), np.uint8)},
             True)
    with pytest.raises(DatasetError, match="labels"):
        load_dataset("cifar10", tmp_path, download=False)


# ---------------------------------------------------------------- Tiny-ImageNet

@pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed: cannot write JPEG fixtures")
def test_tiny_imagenet_folder(tmp_path):
    ref = fx.write_tiny_imagenet(tmp_path / "tiny_imagenet", per_class=3, n_val=4)
    ds = load_dataset("tiny_imagenet", tmp_path, download=False)
    assert ds.train_x.shape == (9, 64, 64, 3) and ds.test_x.shape == (4, 64, 64, 3)
    assert ds.num_classes == 3
    assert ds.classes == ("goldfish, Carassius auratus", "tabby, cat", "bus")  # sorted wnids n01, n02, n03
    np.testing.assert_array_equal(ds.train_y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(ds.test_y, ref["val_y"])
    for i, (c, k) in enumerate((c, k) for c in range(3) for k in range(3)):
        assert np.abs(ds.train_x[i].astype(int) - np.array(fx.tiny_color(c, k))).max() <= 3
    assert np.abs(ds.test_x[0].astype(int) - 128).max() <= 3  # the greyscale val image became RGB
    assert ds.mean == (0.485, 0.456, 0.406) and ds.std == (0.229, 0.224, 0.225)
    lim = load_dataset("tiny_imagenet", tmp_path, download=False, limit_train=2, limit_test=1)
    assert lim.train_x.shape[0] == 2 and lim.test_x.shape[0] == 1


# ---------------------------------------------------------------- bundled / synthetic

def test_digits_real_and_split_fixed():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert ds.train_x.shape == (1437, 8, 8, 1) and ds.test_x.shape == (360, 8, 8, 1)
    assert ds.train_x.max() == 255 and ds.train_x.min() == 0
    raw = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(ds.test_y, raw.target[perm[1437:]])
    np.testing.assert_array_equal(ds.train_x[..., 0], np.rint(raw.images[perm[:1437]] * 255 / 16).astype(np.uint8))
    np.testing.assert_allclose(ds.mean, channel_stats(ds.train_x)[0])
    again = load_dataset("digits", limit_train=10)
    np.testing.assert_array_equal(again.train_x, ds.train_x[:10])


def test_synthetic_deterministic_and_learnable():
    a = load_dataset("synthetic", image_shape=(6, 5, 2), num_classes=4, n_train=400, n_test=100, seed=7)
    b = load_dataset("synthetic", image_shape=(6, 5, 2), num_classes=4, n_train=400, n_test=100, seed=7)
    c = load_dataset("synthetic", image_shape=(6, 5, 2), num_classes=4, n_train=400, n_test=100, seed=8)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x)
    assert a.image_shape == (6, 5, 2) and np.bincount(a.train_y).tolist() == [100] * 4
    # nearest class centroid (fitted on train) classifies the test set well
    f = lambda x: x.reshape(len(x), -1).astype(np.float64)  # noqa: E731
    cent = np.stack([f(a.train_x)[a.train_y == k].mean(0) for k in range(4)])
    pred = np.argmin(((f(a.test_x)[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == a.test_y).mean() > 0.95


# ---------------------------------------------------------------- registry, splits, validation

def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet21k")
    for name in DATASETS:
        assert name in str(e.value)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PCJAX_DATA_DIR", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("PCJAX_DATA_DIR")
    assert str(data_root()).endswith(".cache/pcjax")


def test_split_validation_deterministic_and_disjoint():
    ds = load_dataset("synthetic", n_train=200, n_test=10)
    tr, (vx, vy) = split_validation(ds, 0.25, seed=3)
    tr2, (vx2, _) = split_validation(ds, 0.25, seed=3)
    _, (vx3, _) = split_validation(ds, 0.25, seed=4)
    assert len(vy) == 50 and tr.num_train == 150 and vx.dtype == np.uint8
    np.testing.assert_array_equal(vx, vx2)
    np.testing.assert_array_equal(tr.train_x, tr2.train_x)
    assert not np.array_equal(vx, vx3)
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert rows(vx) | rows(tr.train_x) == rows(ds.train_x) and not rows(vx) & rows(tr.train_x)
    assert tr.test_x is ds.test_x and tr.mean == ds.mean
    tr0, (vx0, vy0) = split_validation(ds, 0.0, seed=0)
    assert vx0.shape == (0, 8, 8, 1) and vy0.shape == (0,) and tr0.num_train == 200
    with pytest.raises(ValueError):
        split_validation(ds, 1.0, seed=0)


def test_array_dataset_validates():
    ds = load_dataset("synthetic", n_train=20, n_test=5)
    with pytest.raises(ValueError, match="uint8"):
        dataclasses.replace(ds, train_x=ds.train_x.astype(np.float32))
    with pytest.raises(ValueError, match="int32"):
        dataclasses.replace(ds, test_y=ds.test_y.astype(np.int64))
    with pytest.raises(ValueError, match="class names"):
        dataclasses.replace(ds, classes=("a",))
    assert isinstance(ds, ArrayDataset) and ds.image_shape == (8, 8, 1)
