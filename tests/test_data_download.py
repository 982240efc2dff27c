"""Download, verification and caching against a local HTTP server (no internet needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import shutil
import socket
import zipfile

import numpy as np
import pytest

from pcjax.data import REGISTRY, DatasetError, fetch, load_dataset, verify_file
from pcjax.data.download import DatasetSource, RemoteFile

try:
    import data_fixtures as fx
except ImportError:  # tests/ imported as a package
    from tests import data_fixtures as fx

HAVE_PIL = importlib.util.find_spec("PIL") is not None
CIFAR10_REQUIRED = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                    "test_batch", "batches.meta")


@pytest.fixture
def mnist_server(tmp_path):
    """Serve four MNIST-format files at SERVER/mnist/; yields (server, registry, arrays, root)."""
    srv_dir = tmp_path / "srv"
    arrays = fx.write_mnist_like(srv_dir / "mnist", seed=1)
    with fx.serve(srv_dir) as server:
        yield server, {"mnist": fx.idx_source("mnist", srv_dir / "mnist", server.url)}, arrays, tmp_path / "root"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("PCJAX_OFFLINE", "PCJAX_DATA_MIRROR", "PCJAX_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


def test_download_then_cache_reuse(mnist_server):
    server, reg, arrays, root = mnist_server
    ds = load_dataset("mnist", root, registry=reg)
    np.testing.assert_array_equal(ds.train_x[..., 0], arrays["train_x"])
    np.testing.assert_array_equal(ds.test_y, arrays["test_y"])
    assert server.requests == 4
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(fx.IDX_NAMES)  # nothing else left
    again = load_dataset("mnist", root, registry=reg)
    assert server.requests == 4  # verified cache: no new request
    np.testing.assert_array_equal(again.train_x, ds.train_x)


def test_mirror_override_argument_and_env(mnist_server, monkeypatch):
    server, reg, arrays, root = mnist_server
    dead = {"mnist": DatasetSource("mnist", tuple(dataclasses.replace(f, urls=("http://127.0.0.1:9/x",))
                                                  for f in reg["mnist"].files))}
    load_dataset("mnist", root / "a", registry=dead, mirror=server.url)
    assert server.requests == 4 and all(p.startswith("/mnist/") for p in server.paths)
    monkeypatch.setenv("PCJAX_DATA_MIRROR", server.url + "/")
    ds = load_dataset("mnist", root / "b", registry=dead)
    assert server.requests == 8
    np.testing.assert_array_equal(ds.train_y, arrays["train_y"])


def test_checksum_mismatch_leaves_nothing(mnist_server):
    server, reg, _, root = mnist_server
    files = list(reg["mnist"].files)
    files[0] = dataclasses.replace(files[0], sha256="0" * 64)
    bad = {"mnist": DatasetSource("mnist", tuple(files))}
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root, registry=bad)
    msg = str(e.value)
    assert "mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert files[0].urls[0] in msg and str(root / "mnist") in msg and "PCJAX_DATA_DIR" in msg
    assert server.requests == 1
    assert list((root / "mnist").iterdir()) == []  # no partial or unverified file


def test_offline_missing_names_file_url_and_dir(mnist_server, monkeypatch):
    server, reg, _, root = mnist_server
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root, registry=reg, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and reg["mnist"].files[0].urls[0] in msg
    assert str(root / "mnist") in msg and "download=False" in msg
    monkeypatch.setenv("PCJAX_OFFLINE", "1")
    with pytest.raises(DatasetError, match="PCJAX_OFFLINE"):
        load_dataset("mnist", root, registry=reg)
    assert server.requests == 0
    # the real registry offline: names the canonical URL
    with pytest.raises(DatasetError, match="ossci-datasets.s3.amazonaws.com/mnist/train-images"):
        load_dataset("mnist", root)


def test_corrupt_local_file_redownloaded_or_reported(mnist_server):
    server, reg, arrays, root = mnist_server
    load_dataset("mnist", root, registry=reg)
    target = root / "mnist" / "train-labels-idx1-ubyte.gz"
    target.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="fails verification"):
        load_dataset("mnist", root, registry=reg, download=False)
    ds = load_dataset("mnist", root, registry=reg)
    assert server.requests == 5
    np.testing.assert_array_equal(ds.train_y, arrays["train_y"])


def test_recompressed_gz_accepted_by_content_digest(tmp_path):
    arrays = fx.write_mnist_like(tmp_path / "mnist")
    spec = RemoteFile("train-labels-idx1-ubyte.gz", ("http://x.invalid/f",), sha256="1" * 64,
                      content_sha256=hashlib.sha256(fx.idx_bytes(arrays["train_y"])).hexdigest())
    path = tmp_path / "mnist" / spec.filename
    assert verify_file(path, spec)[0]
    fx.write_idx_gz(path, arrays["train_y"], mtime=12345)  # other gzip bytes, same content
    assert verify_file(path, spec)[0]
    fx.write_idx_gz(path, arrays["train_y"][::-1])
    ok, detail = verify_file(path, spec)
    assert not ok and "decompressed SHA-256" in detail


def test_network_errors_are_clear(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = {"mnist": DatasetSource("mnist", (RemoteFile("f.gz", (f"http://127.0.0.1:{port}/f.gz",), sha256="0" * 64),))}
    with pytest.raises(DatasetError) as e:
        fetch("mnist", tmp_path, registry=reg)
    assert f"127.0.0.1:{port}/f.gz" in str(e.value) and "could not download f.gz" in str(e.value)
    assert fx.leftovers(tmp_path) == [] and not (tmp_path / "mnist" / "f.gz").exists()


def test_http_404_and_timeout(tmp_path):
    (tmp_path / "srv").mkdir()
    with fx.serve(tmp_path / "srv") as server:
        reg = {"d": DatasetSource("d", (RemoteFile("f.gz", (server.url + "/d/f.gz",), sha256="0" * 64),))}
        with pytest.raises(DatasetError, match="404"):
            fetch("d", tmp_path / "root", registry=reg)
    with socket.socket() as s:  # accepts connections but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/f.gz"
        reg = {"d": DatasetSource("d", (RemoteFile("f.gz", (url,), sha256="0" * 64),))}
        with pytest.raises(DatasetError, match="timed out"):
            fetch("d", tmp_path / "root", registry=reg, timeout=0.3)
    assert fx.leftovers(tmp_path / "root") == []


def test_cifar10_archive_download_extract_and_reuse(tmp_path):
    ref = fx.write_cifar10(tmp_path / "build", bytes_keys=True)
    (tmp_path / "srv" / "cifar10").mkdir(parents=True)
    archive = fx.tar_gz(tmp_path / "build", "cifar-10-batches-py", tmp_path / "srv" / "cifar10" / "cifar-10-python.tar.gz")
    root = tmp_path / "root"
    with fx.serve(tmp_path / "srv") as server:
        reg = {"cifar10": fx.archive_source("cifar10", archive, server.url, "cifar-10-batches-py", CIFAR10_REQUIRED)}
        ds = load_dataset("cifar10", root, registry=reg)
        assert server.requests == 1
        np.testing.assert_array_equal(ds.train_y, ref["train_y"])
        assert (root / "cifar10" / "cifar-10-python.tar.gz").exists() and fx.leftovers(root) == []
        load_dataset("cifar10", root, registry=reg)
        assert server.requests == 1
        # unpacked directory lost: re-extracted from the verified local archive, still no request
        shutil.rmtree(root / "cifar10" / "cifar-10-batches-py")
        load_dataset("cifar10", root, registry=reg, download=False)
        assert server.requests == 1


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_archive_clear_error_nothing_partial(tmp_path, kind):
    fx.write_cifar10(tmp_path / "build", bytes_keys=False)
    good = fx.tar_gz(tmp_path / "build", "cifar-10-batches-py", tmp_path / "good.tar.gz")
    data = b"not an archive at all" * 100 if kind == "garbage" else good.read_bytes()[: good.stat().st_size // 2]
    (tmp_path / "srv" / "cifar10").mkdir(parents=True)
    archive = tmp_path / "srv" / "cifar10" / "cifar-10-python.tar.gz"
    archive.write_bytes(data)
    root = tmp_path / "root"
    with fx.serve(tmp_path / "srv") as server:
        reg = {"cifar10": fx.archive_source("cifar10", archive, server.url, "cifar-10-batches-py", CIFAR10_REQUIRED)}
        with pytest.raises(DatasetError) as e:
            load_dataset("cifar10", root, registry=reg)
    msg = str(e.value)
    assert "cannot unpack" in msg and "cifar-10-python.tar.gz" in msg and str(root / "cifar10") in msg
    assert list((root / "cifar10").iterdir()) == []  # no archive, no temp dir, no half-unpacked folder


def test_archive_without_expected_folder(tmp_path):
    fx.write_cifar10(tmp_path / "build", bytes_keys=False)
    (tmp_path / "build" / "cifar-10-batches-py").rename(tmp_path / "build" / "other")
    (tmp_path / "srv" / "cifar10").mkdir(parents=True)
    archive = fx.tar_gz(tmp_path / "build", "other", tmp_path / "srv" / "cifar10" / "cifar-10-python.tar.gz")
    with fx.serve(tmp_path / "srv") as server:
        reg = {"cifar10": fx.archive_source("cifar10", archive, server.url, "cifar-10-batches-py", CIFAR10_REQUIRED)}
        with pytest.raises(DatasetError, match="no top-level directory"):
            load_dataset("cifar10", tmp_path / "root", registry=reg)
    assert list((tmp_path / "root" / "cifar10").iterdir()) == []


def test_zip_path_traversal_rejected(tmp_path):
    (tmp_path / "srv" / "d").mkdir(parents=True)
    archive = tmp_path / "srv" / "d" / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("top/ok.txt", "fine")
        z.writestr("../evil.txt", "escape")
    with fx.serve(tmp_path / "srv") as server:
        reg = {"d": fx.archive_source("d", archive, server.url, "top", ("ok.txt",))}
        with pytest.raises(DatasetError, match="unsafe path"):
            fetch("d", tmp_path / "root", registry=reg)
    assert not (tmp_path / "root" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed: cannot write JPEG fixtures")
def test_tiny_imagenet_zip_download(tmp_path):
    ref = fx.write_tiny_imagenet(tmp_path / "build")
    (tmp_path / "srv" / "tiny_imagenet").mkdir(parents=True)
    archive = fx.zip_dir(tmp_path / "build", "tiny-imagenet-200", tmp_path / "srv" / "tiny_imagenet" / "t.zip")
    req = ("wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt")
    with fx.serve(tmp_path / "srv") as server:
        reg = {"tiny_imagenet": fx.archive_source("tiny_imagenet", archive, server.url, "tiny-imagenet-200", req)}
        ds = load_dataset("tiny_imagenet", tmp_path / "root", registry=reg)
    np.testing.assert_array_equal(ds.test_y, ref["val_y"])
    assert ds.train_x.shape == (6, 64, 64, 3)


def test_incomplete_unpacked_dir_reported(tmp_path):
    (tmp_path / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DatasetError, match="incomplete"):
        load_dataset("cifar10", tmp_path, download=False)


def test_canonical_registry_is_complete():
    assert set(REGISTRY) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet"}
    for name, src in REGISTRY.items():
        assert src.subdir == name
        for f in src.files:
            assert f.sha256 or f.md5, f
            assert all(u.startswith(("http://", "https://")) and u.endswith(f.filename) for u in f.urls)
    assert REGISTRY["mnist"].files[0].urls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert REGISTRY["fashion_mnist"].files[0].urls[0].startswith("http://fashion-mnist.s3-website.eu-central-1")
    assert REGISTRY["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert REGISTRY["cifar100"].files[0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert all(f.content_sha256 for n in ("mnist", "fashion_mnist") for f in REGISTRY[n].files)
