"""Small files in each dataset's canonical format, a registry for them and a local HTTP server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import struct
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pcjax.data.download import DatasetSource, RemoteFile

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    """Uncompressed IDX bytes of a uint8 array (magic 0x00000801 / 0x00000803 ...)."""
    arr = np.ascontiguousarray(arr, np.uint8)
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", n) for n in arr.shape)
    return header + arr.tobytes()


def write_idx_gz(path: Path, arr: np.ndarray, mtime: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime) as f:
        f.write(idx_bytes(arr))


def make_images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def write_mnist_like(ddir: Path, seed: int = 0, n_train: int = 12, n_test: int = 7) -> dict[str, np.ndarray]:
    """Write the four IDX .gz files into ``ddir``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train_x": make_images(rng, n_train, (28, 28)), "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_x": make_images(rng, n_test, (28, 28)), "test_y": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, key in zip(IDX_NAMES, ("train_x", "train_y", "test_x", "test_y")):
        write_idx_gz(ddir / name, arrays[key])
    return arrays


def _key(k: str, bytes_keys: bool) -> str | bytes:
    return k.encode() if bytes_keys else k


def _dump(path: Path, d: dict, bytes_keys: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({_key(k, bytes_keys): v for k, v in d.items()}, f, protocol=2)


def write_cifar10(base: Path, bytes_keys: bool, seed: int = 0, per_batch: int = 3, n_test: int = 4) -> dict:
    """Write ``base/cifar-10-batches-py``; returns NHWC images/labels and class names."""
    rng = np.random.default_rng(seed)
    out = base / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    xs, ys = [], []
    for i in range(1, 6):
        rows = make_images(rng, per_batch, (3072,))
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(out / f"data_batch_{i}", {"data": rows, "labels": labels, "batch_label": f"training batch {i} of 5"},
              bytes_keys)
        xs.append(rows)
        ys.extend(labels)
    test_rows = make_images(rng, n_test, (3072,))
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    _dump(out / "test_batch", {"data": test_rows, "labels": test_labels}, bytes_keys)
    meta_names = [n.encode() for n in names] if bytes_keys else names
    _dump(out / "batches.meta", {"label_names": meta_names, "num_vis": 3072}, bytes_keys)
    return {"train_rows": np.concatenate(xs), "train_y": np.array(ys), "test_rows": test_rows,
            "test_y": np.array(test_labels), "classes": tuple(names)}


def write_cifar100(base: Path, bytes_keys: bool, seed: int = 0, n_train: int = 9, n_test: int = 5) -> dict:
    """Write ``base/cifar-100-python/{train,test,meta}``."""
    rng = np.random.default_rng(seed)
    out = base / "cifar-100-python"
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    res = {"fine": tuple(fine), "coarse": tuple(coarse)}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = make_images(rng, n, (3072,))
        f = [int(v) for v in rng.integers(0, 100, n)]
        c = [v % 20 for v in f]
        _dump(out / split, {"data": rows, "fine_labels": f, "coarse_labels": c}, bytes_keys)
        res.update({f"{split}_rows": rows, f"{split}_fine": np.array(f), f"{split}_coarse": np.array(c)})
    enc = (lambda xs: [x.encode() for x in xs]) if bytes_keys else (lambda xs: xs)
    _dump(out / "meta", {"fine_label_names": enc(fine), "coarse_label_names": enc(coarse)}, bytes_keys)
    return res


TINY_WNIDS = ("n02", "n01", "n03")  # deliberately unsorted, as in the real wnids.txt


def tiny_color(cls: int, k: int) -> tuple[int, int, int]:
    return (40 * cls + 20, 10 * k + 30, 200 - 30 * cls)


def write_tiny_imagenet(base: Path, per_class: int = 2, n_val: int = 4) -> dict:
    """Write a miniature ``base/tiny-imagenet-200`` with flat-colour 64x64 JPEGs (needs Pillow)."""
    from PIL import Image

    out = base / "tiny-imagenet-200"
    out.mkdir(parents=True, exist_ok=True)
    (out / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (out / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, cat\nn03\tbus\nn99\tunused\n")
    sorted_ids = sorted(TINY_WNIDS)
    for c, w in enumerate(sorted_ids):
        d = out / "train" / w / "images"
        d.mkdir(parents=True)
        (out / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(per_class):
            Image.new("RGB", (64, 64), tiny_color(c, k)).save(d / f"{w}_{k}.JPEG", quality=95)
    (out / "val" / "images").mkdir(parents=True)
    lines, val_y = [], []
    for k in range(n_val):
        c = (k * 2 + 1) % len(sorted_ids)
        mode = "L" if k == 0 else "RGB"  # one greyscale file, as in the real data
        color = 128 if mode == "L" else tiny_color(c, 0)
        Image.new(mode, (64, 64), color).save(out / "val" / "images" / f"val_{k}.JPEG", quality=95)
        lines.append(f"val_{k}.JPEG\t{sorted_ids[c]}\t0\t0\t63\t63")
        val_y.append(c)
    (out / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"val_y": np.array(val_y), "sorted_wnids": sorted_ids}


def tar_gz(src_dir: Path, top: str, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as t:
        t.add(src_dir / top, arcname=top)
    return dest


def zip_dir(src_dir: Path, top: str, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted((src_dir / top).rglob("*")):
            z.write(p, p.relative_to(src_dir).as_posix())
    return dest


def idx_source(subdir: str, files_dir: Path, base_url: str) -> DatasetSource:
    """A registry entry for the IDX files in ``files_dir`` served at ``base_url/subdir/``."""
    return DatasetSource(subdir, tuple(
        RemoteFile(n, (f"{base_url}/{subdir}/{n}",), sha256=sha256(files_dir / n)) for n in IDX_NAMES))


def archive_source(subdir: str, archive: Path, base_url: str, extract_dir: str,
                   required: tuple[str, ...], digest: str | None = None) -> DatasetSource:
    return DatasetSource(subdir, (RemoteFile(archive.name, (f"{base_url}/{subdir}/{archive.name}",),
                                             sha256=digest or sha256(archive), extract_dir=extract_dir),),
                         required=tuple(f"{extract_dir}/{r}" for r in required))


class Server:
    """Static files from ``directory`` on 127.0.0.1; ``paths`` records every request."""

    def __init__(self, directory: Path):
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                paths.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def requests(self) -> int:
        return len(self.paths)


@contextmanager
def serve(directory: Path) -> Iterator[Server]:
    s = Server(directory)
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


def leftovers(directory: Path) -> list[str]:
    """Temporary/partial entries (``.*.part``, ``.extract-*``) anywhere below ``directory``."""
    if not directory.exists():
        return []
    return [p.name for p in directory.rglob(".*") if p.name.endswith(".part") or p.name.startswith(".extract-")]

