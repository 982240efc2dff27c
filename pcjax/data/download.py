"""Fetch and verify the canonical distribution files of each dataset.

:data:`REGISTRY` lists, per dataset, the files as their publishers distribute them, their URLs
and digests. :func:`fetch` makes sure the files are present and verified under
``ROOT/<subdir>/``, downloading what is missing (urllib, streamed to a temporary file in the
target directory, verified, then moved into place with :func:`os.replace`). Archives are
unpacked into a temporary directory that is renamed into place, so a dataset directory is
either complete or absent. Any failure removes what was partially written and raises
:class:`~pcjax.data.dataset.DatasetError` naming the file, the URL, the directory and the fix.

Environment: ``PCJAX_DATA_DIR`` (data root), ``PCJAX_OFFLINE=1`` (never use the network),
``PCJAX_DATA_MIRROR`` (download base URL; a file is then fetched from
``MIRROR/<subdir>/<file name>``).

About the digests (be careful: gzip bytes depend on the compressor, so a re-compressed copy of
the same data has another archive digest):

* ``sha256`` is the SHA-256 of the file exactly as distributed by the canonical URL. The values
  for MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 are the ones published with torchvision's
  dataset definitions; they agree with the widely published MD5s (kept in ``md5``).
* ``content_sha256`` (IDX ``.gz`` files only) is the SHA-256 of the *decompressed* IDX file. It was
  computed from local copies whose decompressed MD5s equal the published canonical ones
  (MNIST ``6bbc9ace...``, Fashion-MNIST ``f4a8712d...`` for the training images), so a copy
  that was re-compressed (e.g. by a Linux distribution) is still accepted when its content is
  byte-identical to the canonical data.
* Tiny-ImageNet: only the archive's widely used MD5 is known here; it is verified with MD5.
* Files already unpacked from an archive are not re-hashed on each load: the archive was
  verified when it was unpacked (or the files were put there by the user).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pcjax.data.dataset import DatasetError, data_root

__all__ = ["REGISTRY", "DatasetSource", "RemoteFile", "fetch", "file_digest", "verify_file"]

DEFAULT_TIMEOUT = 30.0  # seconds, per network operation
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One distributed file: where to get it and how to verify it.

    ``urls`` are tried in order. At least one of ``sha256`` / ``md5`` / ``content_sha256`` should
    be set; a file with no digest at all is accepted unverified. ``extract_dir`` marks an archive
    (``.tar.gz`` or ``.zip``) and names the top-level directory it unpacks to.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    content_sha256: str | None = None
    extract_dir: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """The files of one dataset, stored under ``ROOT/subdir``.

    ``required`` lists paths (relative to ``ROOT/subdir``) that must exist once the archive is
    unpacked; when they all exist the dataset is used as is.
    """

    subdir: str
    files: tuple[RemoteFile, ...]
    required: tuple[str, ...] = ()


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "https://storage.googleapis.com/cvdf-datasets/mnist/")
_FMNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(bases: tuple[str, ...], digests: tuple[tuple[str, str, str], ...]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, tuple(b + name for b in bases), sha256=s, md5=m, content_sha256=c)
                 for name, (s, m, c) in zip(_IDX, digests))


_CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                  "test_batch", "batches.meta")

#: The canonical files of every file-backed dataset.
REGISTRY: dict[str, DatasetSource] = {
    "mnist": DatasetSource("mnist", _idx_files(_MNIST_URLS, (
        ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", "d53e105ee54ea40749a09fcbcd1e9432",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", "9fb629c4189551a2d022fa330f9573f3",
         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", "ec29112dd5afa0611ce80d1b7f02629c",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ))),
    "fashion_mnist": DatasetSource("fashion_mnist", _idx_files(_FMNIST_URLS, (
        ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", "25c81989df183df01b3e8a0aad5dffbe",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", "bef4ecab320f06d8554ea6380940ec79",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", "bb300cfdad3c16e7a12a480ee83cd310",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ))),
    "cifar10": DatasetSource("cifar10", (RemoteFile(
        "cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        md5="c58f30108f718f92721af3b95e74349a", extract_dir="cifar-10-batches-py"),),
        required=tuple(f"cifar-10-batches-py/{f}" for f in _CIFAR10_FILES)),
    "cifar100": DatasetSource("cifar100", (RemoteFile(
        "cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        md5="eb9058c3a382ffc7106e4002c42a8d85", extract_dir="cifar-100-python"),),
        required=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")),
    "tiny_imagenet": DatasetSource("tiny_imagenet", (RemoteFile(
        "tiny-imagenet-200.zip", ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
        md5="90528d7ca1a48142e341f4ef8d21d0de", extract_dir="tiny-imagenet-200"),),
        required=tuple(f"tiny-imagenet-200/{p}" for p in
                       ("wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt"))),
}


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", *, gunzip: bool = False) -> str:
    """Hex digest of a file (of its gzip-decompressed content when ``gunzip``), read in chunks."""
    h = hashlib.new(algorithm)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike[str], spec: RemoteFile) -> tuple[bool, str]:
    """Check a file against ``spec``; returns ``(ok, detail)``.

    Accepted when its SHA-256 equals ``spec.sha256`` (or, with no SHA-256 given, its MD5 equals
    ``spec.md5``), or when its gzip-decompressed content has SHA-256 ``spec.content_sha256``.
    """
    details = []
    if spec.sha256 or spec.md5:
        algo, want = ("sha256", spec.sha256) if spec.sha256 else ("md5", spec.md5)
        got = file_digest(path, algo)
        if got == want:
            return True, f"{algo} ok"
        details.append(f"{algo.upper()} {got}, expected {want}")
    if spec.content_sha256:
        try:
            got = file_digest(path, gunzip=True)
        except (OSError, EOFError, zlib.error) as e:
            got = f"unreadable gzip ({e})"
        if got == spec.content_sha256:
            return True, "content sha256 ok"
        details.append(f"decompressed SHA-256 {got}, expected {spec.content_sha256}")
    if not details:
        return True, "no digest to check"
    return False, "; ".join(details)


def _offline() -> bool:
    return os.environ.get("PCJAX_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _urls(src: DatasetSource, spec: RemoteFile, mirror: str | None) -> tuple[str, ...]:
    mirror = mirror or os.environ.get("PCJAX_DATA_MIRROR") or None
    if mirror:
        return (f"{mirror.rstrip('/')}/{src.subdir}/{spec.filename}",)
    return spec.urls


def _fix(ddir: Path, spec: RemoteFile, urls: tuple[str, ...]) -> str:
    digest = f"SHA-256 {spec.sha256}" if spec.sha256 else f"MD5 {spec.md5}" if spec.md5 else "no digest"
    unpacked = f" (or its unpacked folder {spec.extract_dir}/)" if spec.extract_dir else ""
    return (f"Fix: download {spec.filename} ({digest}) from {urls[0]} manually into {ddir}{unpacked}, "
            f"or set PCJAX_DATA_DIR to a data root that already holds it "
            f"(or PCJAX_DATA_MIRROR to a reachable mirror).")


def _download(url: str, dest: Path, spec: RemoteFile, timeout: float) -> None:
    """Stream ``url`` to a temporary file next to ``dest``, verify it, then move it into place."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
        ok, detail = verify_file(tmp, spec)
        if not ok:
            raise DatasetError(f"checksum mismatch ({detail})")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _extract(archive: Path, ddir: Path, spec: RemoteFile) -> None:
    """Unpack ``archive`` into a temporary directory, then rename ``spec.extract_dir`` into ``ddir``."""
    tmpdir = Path(tempfile.mkdtemp(dir=ddir, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    p = PurePosixPath(member)
                    if p.is_absolute() or ".." in p.parts:
                        raise DatasetError(f"unsafe path {member!r} in archive")
                z.extractall(tmpdir)
        else:
            with tarfile.open(archive, "r:*") as t:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuses unsafe members
                    t.extractall(tmpdir, filter="data")
                else:
                    for m in t.getmembers():
                        p = PurePosixPath(m.name)
                        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                            raise DatasetError(f"unsafe member {m.name!r} in archive")
                    t.extractall(tmpdir)
        unpacked = tmpdir / str(spec.extract_dir)
        if not unpacked.is_dir():
            raise DatasetError(f"archive has no top-level directory {spec.extract_dir!r}")
        try:
            os.rename(unpacked, ddir / str(spec.extract_dir))
        except OSError:
            if not (ddir / str(spec.extract_dir)).is_dir():  # else: a concurrent process unpacked it first
                raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def fetch(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    mirror: str | None = None,
    registry: Mapping[str, DatasetSource] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Make sure dataset ``name``'s files are present and verified; return ``ROOT/<subdir>``.

    Plain files (IDX ``.gz``) are verified on every call. For archives, the unpacked directory is
    used as is once all ``required`` paths exist; otherwise the archive is verified (and
    downloaded if missing or failing verification) and unpacked atomically. With
    ``download=False`` or ``PCJAX_OFFLINE=1`` the network is never touched. ``registry``
    replaces :data:`REGISTRY` (e.g. for fixtures with their own digests); ``mirror`` (or
    ``PCJAX_DATA_MIRROR``) replaces the URLs by ``MIRROR/<subdir>/<file name>``.
    """
    src = (REGISTRY if registry is None else registry)[name]
    ddir = data_root(root) / src.subdir
    if src.required and all((ddir / r).exists() for r in src.required):
        return ddir
    for spec in src.files:
        if spec.extract_dir and (ddir / spec.extract_dir).exists():
            missing = [r for r in src.required if not (ddir / r).exists()]
            raise DatasetError(f"{ddir / spec.extract_dir} exists but is incomplete (missing {', '.join(missing)}). "
                               f"Fix: remove that directory so that it is unpacked again from {spec.filename}.")
    offline = not download or _offline()
    why_offline = "download=False" if not download else "PCJAX_OFFLINE is set"
    for spec in src.files:
        path, urls = ddir / spec.filename, _urls(src, spec, mirror)
        downloaded = False
        if path.exists():
            ok, detail = verify_file(path, spec)
            if not ok and offline:
                raise DatasetError(f"{path} fails verification ({detail}) and {why_offline}. "
                                   + _fix(ddir, spec, urls))
        else:
            ok = False
            if offline:
                raise DatasetError(f"{name}: {spec.filename} is missing from {ddir} and {why_offline} "
                                   f"(URL {urls[0]}). " + _fix(ddir, spec, urls))
        if not ok:
            ddir.mkdir(parents=True, exist_ok=True)
            errors = []
            for url in urls:
                try:
                    _download(url, path, spec, timeout)
                    downloaded = True
                    break
                except (DatasetError, OSError, http.client.HTTPException, ValueError) as e:
                    errors.append(f"{url}: {e}")
            if not downloaded:
                raise DatasetError(f"{name}: could not download {spec.filename} into {ddir}: "
                                   + " | ".join(errors) + ". " + _fix(ddir, spec, urls))
        if spec.extract_dir:
            try:
                _extract(path, ddir, spec)
            except (DatasetError, tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
                if downloaded:
                    path.unlink(missing_ok=True)
                raise DatasetError(f"{name}: cannot unpack {path} (from {urls[0]}): {e}. "
                                   f"Nothing was unpacked into {ddir}"
                                   + ("; the downloaded archive was removed. " if downloaded else ". ")
                                   + _fix(ddir, spec, urls)) from e
    missing = [r for r in src.required if not (ddir / r).exists()]
    if missing:
        raise DatasetError(f"{name}: {ddir} lacks {', '.join(missing)} after unpacking.")
    return ddir
