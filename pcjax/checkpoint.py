"""Atomic, verified checkpoints of arbitrary JAX pytrees.

A checkpoint holds the array-like leaves of a pytree (JAX/numpy arrays, typed PRNG keys via
their key data, Python scalars), a fingerprint of its structure (treedef plus every leaf's path,
kind, shape and dtype), a JSON ``meta`` dict and a format version.  Non-array leaves (e.g. the
activation functions inside an equinox module) are not stored: they come from the template
passed to :func:`load_checkpoint`, normally the freshly initialised training state.

File layout::

    b"PCJAXCK\\n" | u32 format version | u64 header length | header JSON | payload | sha256

The SHA-256 covers everything before it, so truncation or any flipped byte is detected.
Files are written to a temporary file in the same directory, fsynced and moved into place with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import PCJaxError

MAGIC = b"PCJAXCK\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length
_DIGEST = 32
PARTIAL_NAME = "partial.pcjax"
FRESH_RUN_HINT = ("start a fresh run (trainer.resume=false), or give the run another directory "
                  "(hydra.run.dir=DIR on the command line)")


class CheckpointError(PCJaxError):
    """A checkpoint cannot be used: missing, corrupt, wrong format version or incompatible.

    A ``RuntimeError`` (via :class:`~pcjax.errors.PCJaxError`).
    """


class CheckpointCorruptError(CheckpointError):
    """The file is truncated, modified or unreadable."""


class CheckpointIncompatibleError(CheckpointError):
    """The file is intact but does not match the template's structure, shapes or dtypes."""


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaf_spec(leaf: Any) -> dict[str, Any]:
    """Kind, shape and dtype of one leaf (``kind="static"`` leaves are not stored)."""
    if isinstance(leaf, (bool, int, float, complex)):
        return {"kind": f"py:{type(leaf).__name__}", "shape": [], "dtype": np.asarray(leaf).dtype.name}
    if _is_key(leaf):
        data = jax.random.key_data(leaf)
        return {"kind": f"key:{jax.random.key_impl(leaf)}", "shape": list(data.shape),
                "dtype": str(data.dtype)}
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return {"kind": "array", "shape": list(np.shape(leaf)), "dtype": str(leaf.dtype)}
    return {"kind": "static", "type": type(leaf).__name__}


def tree_fingerprint(tree: Any) -> dict[str, Any]:
    """Structure fingerprint: normalised treedef string and ``path/kind/shape/dtype`` per leaf."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [{"path": jax.tree_util.keystr(p), **_leaf_spec(leaf)} for p, leaf in with_path]
    return {"treedef": re.sub(r"0x[0-9a-fA-F]+", "0x?", str(treedef)), "leaves": leaves}


def _fmt(spec: dict[str, Any]) -> str:
    if spec["kind"] == "static":
        return f"non-array {spec.get('type')}"
    return f"shape {tuple(spec['shape'])} {spec['dtype']} ({spec['kind']})"


def describe_mismatch(saved: dict[str, Any], template: Any) -> str | None:
    """Explain how a saved fingerprint differs from ``template`` (a pytree or fingerprint).

    Returns ``None`` when they are compatible, otherwise a sentence naming the first
    mismatching leaf path and both shapes/dtypes (or the structural difference).
    """
    current = template if _looks_like_fingerprint(template) else tree_fingerprint(template)
    old, new = saved["leaves"], current["leaves"]
    old_paths, new_paths = [a["path"] for a in old], [b["path"] for b in new]
    if old_paths != new_paths:
        only_old = [p for p in old_paths if p not in set(new_paths)]
        only_new = [p for p in new_paths if p not in set(old_paths)]
        parts = [f"{len(only_old)} leaves only in the checkpoint (first: {only_old[0] or '<root>'})"] if only_old else []
        parts += [f"{len(only_new)} leaves only in the current state (first: {only_new[0] or '<root>'})"] if only_new else []
        return (f"different structure ({len(old)} leaves in the checkpoint, {len(new)} in the current "
                f"state): " + ("; ".join(parts) or "the same leaves in a different order"))
    for a, b in zip(old, new):
        if (a["kind"] == "static") != (b["kind"] == "static") or (
            a["kind"] != "static" and (a["kind"], a["shape"], a["dtype"]) != (b["kind"], b["shape"], b["dtype"])
        ):
            return (f"leaf {a['path'] or '<root>'} has {_fmt(a)} in the checkpoint "
                    f"but {_fmt(b)} in the current state")
    if saved["treedef"] != current["treedef"]:
        return ("different structure (same leaves, different static fields or containers): "
                f"checkpoint {saved['treedef'][:300]} vs current {current['treedef'][:300]}")
    return None


def _looks_like_fingerprint(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) == {"treedef", "leaves"} and isinstance(obj["leaves"], list)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"checkpoint meta value {obj!r} of type {type(obj).__name__} is not JSON serialisable")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file in the same directory + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | Path, tree: Any, meta: dict) -> None:
    """Atomically save the array-like leaves of ``tree`` plus ``meta`` (JSON) to ``path``."""
    path = Path(path)
    fingerprint = tree_fingerprint(tree)
    chunks, entries, offset = [], [], 0
    for leaf, spec in zip(jax.tree_util.tree_leaves(tree), fingerprint["leaves"]):
        if spec["kind"] == "static":
            continue
        data = jax.random.key_data(leaf) if spec["kind"].startswith("key:") else leaf
        raw = np.ascontiguousarray(np.asarray(data)).tobytes()
        entries.append({"path": spec["path"], "offset": offset, "nbytes": len(raw)})
        chunks.append(raw)
        offset += len(raw)
    header = {"format_version": FORMAT_VERSION, "meta": meta, "fingerprint": fingerprint,
              "arrays": entries, "payload_bytes": offset}
    header_bytes = json.dumps(header, default=_json_default).encode("utf-8")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + b"".join(chunks)
    _atomic_write(path, body + hashlib.sha256(body).digest())


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Read and verify a checkpoint file; return ``(header, payload)`` or raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or {FRESH_RUN_HINT}")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointCorruptError(f"checkpoint {path} is unreadable ({exc})") from exc
    corrupt = (f"checkpoint {path} is corrupt or truncated ({{why}}); it was left untouched. "
               f"Move it aside and resume from an older checkpoint, or {FRESH_RUN_HINT}")
    if len(blob) < _PREFIX.size + _DIGEST:
        raise CheckpointCorruptError(corrupt.format(why=f"only {len(blob)} bytes"))
    magic, version, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointCorruptError(corrupt.format(why="not a pcjax checkpoint: bad magic bytes"))
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} uses format version {version}, this pcjax reads version "
            f"{FORMAT_VERSION}; load it with the pcjax version that wrote it, or {FRESH_RUN_HINT}")
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointCorruptError(corrupt.format(why="SHA-256 mismatch"))
    try:
        header = json.loads(body[_PREFIX.size:_PREFIX.size + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorruptError(corrupt.format(why=f"bad header: {exc}")) from exc
    payload = body[_PREFIX.size + header_len:]
    if len(payload) != header.get("payload_bytes"):
        raise CheckpointCorruptError(corrupt.format(why="payload size does not match header"))
    return header, payload


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict of a checkpoint, read from its header only (the payload and its SHA-256 are
    checked when the checkpoint is loaded); raises CheckpointError when the header is unreadable."""
    path = Path(path)
    corrupt = f"checkpoint {path} is corrupt or truncated ({{why}}); it was left untouched. {FRESH_RUN_HINT}"
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise CheckpointCorruptError(corrupt.format(why=f"only {len(prefix)} bytes"))
            magic, version, header_len = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise CheckpointCorruptError(corrupt.format(why="not a pcjax checkpoint: bad magic bytes"))
            if version != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path} uses format version {version}, this pcjax reads "
                                      f"version {FORMAT_VERSION}; {FRESH_RUN_HINT}")
            raw = fh.read(header_len)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or {FRESH_RUN_HINT}") from None
    except OSError as exc:
        raise CheckpointCorruptError(f"checkpoint {path} is unreadable ({exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorruptError(corrupt.format(why=f"bad header: {exc}")) from exc
    meta = header.get("meta") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _restore_leaf(template: Any, spec: dict[str, Any], raw: bytes) -> Any:
    if spec["kind"].startswith("py:"):
        value = np.frombuffer(raw, dtype=jnp.dtype(spec["dtype"]))[0].item()
        return type(template)(value)
    array = np.frombuffer(raw, dtype=jnp.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
    if spec["kind"].startswith("key:"):
        return jax.random.wrap_key_data(jnp.asarray(array), impl=spec["kind"][4:])
    if isinstance(template, jax.Array):
        try:
            return jax.device_put(array, template.sharding)
        except Exception:  # noqa: BLE001 - e.g. deleted/donated template buffers
            return jnp.asarray(array)
    if isinstance(template, np.generic):
        return array[()]
    return array


def load_checkpoint(path: str | Path, like: Any) -> tuple[Any, dict]:
    """Load ``path`` into a pytree shaped like ``like``; return ``(tree, meta)``.

    Raises :class:`CheckpointError` (or a subclass) naming the file and the fix when the file is
    missing, corrupt, from another format version, or incompatible with ``like``.
    """
    path = Path(path)
    header, payload = read_checkpoint(path)
    problem = describe_mismatch(header["fingerprint"], like)
    if problem is not None:
        raise CheckpointIncompatibleError(
            f"checkpoint {path} does not match the current training state: {problem}. "
            f"The model/optimiser configuration probably changed; {FRESH_RUN_HINT}")
    template_leaves, treedef = jax.tree_util.tree_flatten(like)
    arrays = iter(header["arrays"])
    restored = []
    for leaf, spec in zip(template_leaves, header["fingerprint"]["leaves"]):
        if spec["kind"] == "static":
            restored.append(leaf)
            continue
        entry = next(arrays)
        raw = payload[entry["offset"]:entry["offset"] + entry["nbytes"]]
        restored.append(_restore_leaf(leaf, spec, raw))
    return jax.tree_util.tree_unflatten(treedef, restored), header["meta"]


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds something to resume from: a ``latest`` pointer or a within-epoch checkpoint."""
    run_dir = Path(run_dir)
    return (run_dir / "latest").exists() or (run_dir / PARTIAL_NAME).exists()


class CheckpointManager:
    """Numbered checkpoints ``ckpt_{epoch:05d}.pcjax`` in ``run_dir`` with a ``latest`` pointer.

    ``save`` writes the checkpoint and then the pointer (both atomically) and prunes all but the
    newest ``keep``.  Checkpoints of an earlier run that this manager did not resume from
    (:meth:`restore_latest`) are never overwritten: the first ``save`` moves them into
    ``run_dir/previous-<time>/`` with a warning.  ``restore_latest`` never falls back silently:
    a corrupt latest checkpoint raises, naming the older intact one and how to use it.
    """

    PATTERN = re.compile(r"^ckpt_(\d+)\.pcjax$")

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.run_dir, self.keep = Path(run_dir), keep
        self.pointer = self.run_dir / "latest"
        self._resumed_epoch: int | None = None
        self._owned = False  # True once this manager resumed or saved here

    def path_for(self, epoch: int) -> Path:
        """File name of the checkpoint for ``epoch``."""
        return self.run_dir / f"ckpt_{epoch:05d}.pcjax"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Existing checkpoint files as ``(epoch, path)``, oldest first."""
        if not self.run_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.run_dir.iterdir()
                 if (m := self.PATTERN.match(p.name))]
        return sorted(found)

    def save(self, tree: Any, meta: dict, epoch: int) -> Path:
        """Save ``tree`` for ``epoch`` (``meta`` gains ``"epoch"``), update ``latest``, prune."""
        if meta.get("epoch", epoch) != epoch:
            raise ValueError(f"meta['epoch']={meta['epoch']} disagrees with epoch={epoch}")
        if not self._owned:
            self._archive_previous()
        path = self.path_for(epoch)
        if path.exists():
            warnings.warn(f"overwriting {path}: it lies beyond the checkpoint this run resumed "
                          f"from (epoch {self._resumed_epoch})", stacklevel=2)
        save_checkpoint(path, tree, {**meta, "epoch": epoch})
        _atomic_write(self.pointer, (path.name + "\n").encode())
        self._owned = True
        self.drop_partial()  # superseded by the end-of-epoch checkpoint
        # prune older ones; files beyond `epoch` (left by a crash or a roll-back) stay untouched
        older = [c for c in self.checkpoints() if c[0] <= epoch]
        for _, old in older[: max(len(older) - self.keep, 0)]:
            old.unlink(missing_ok=True)
        return path

    # ---------------------------------------------------------------- within-epoch checkpoints
    @property
    def partial_path(self) -> Path:
        """The within-epoch checkpoint: the state after the last saved chunk of the epoch in progress."""
        return self.run_dir / PARTIAL_NAME

    def save_partial(self, state: Any, metrics: dict[str, np.ndarray], meta: dict) -> Path:
        """Atomically save the state part-way through an epoch together with the per-step metrics of the
        steps run so far (``meta`` must name ``"epoch"``, the 0-based epoch in progress, and ``"chunk"``,
        the first chunk still to run). One file, replaced at every save; :meth:`save` of the epoch
        removes it."""
        if not {"epoch", "chunk"} <= set(meta):
            raise ValueError(f"a within-epoch checkpoint needs meta['epoch'] and meta['chunk'], got {sorted(meta)}")
        if not self._owned:
            self._archive_previous()
        shapes = {k: [list(np.shape(v)), str(np.asarray(v).dtype)] for k, v in metrics.items()}
        save_checkpoint(self.partial_path, (state, {k: np.asarray(v) for k, v in metrics.items()}),
                        {**meta, "metric_shapes": shapes})
        self._owned = True
        return self.partial_path

    def load_partial(self, like: Any, epoch: int) -> tuple[Any, dict[str, np.ndarray], dict] | None:
        """``(state, metrics, meta)`` of the within-epoch checkpoint of ``epoch`` (0-based), or ``None``
        when there is none. One left from an earlier epoch (a crash between the end-of-epoch checkpoint
        and the removal of the within-epoch one) is stale and removed. One from a *later* epoch than
        ``epoch`` means the end-of-epoch checkpoints it followed are missing: that raises."""
        path = self.partial_path
        if not path.is_file():
            return None
        meta = read_checkpoint_meta(path)
        saved = int(meta.get("epoch", -1))
        if saved < epoch:
            path.unlink(missing_ok=True)
            return None
        if saved > epoch:
            raise CheckpointError(
                f"{path} continues epoch {saved + 1}, but the latest end-of-epoch checkpoint resumes at epoch "
                f"{epoch + 1}: the checkpoints in between are missing. Move {path.name} aside to redo epoch "
                f"{epoch + 1} from the latest checkpoint, or {FRESH_RUN_HINT}")
        metrics_like = {k: np.zeros(shape, dtype) for k, (shape, dtype) in (meta.get("metric_shapes") or {}).items()}
        (state, metrics), meta = load_checkpoint(path, (like, metrics_like))
        self._owned = True
        return state, {k: np.asarray(v) for k, v in metrics.items()}, meta

    def drop_partial(self) -> None:
        """Remove the within-epoch checkpoint (its epoch is complete, or the run starts afresh)."""
        self.partial_path.unlink(missing_ok=True)

    def _archive_previous(self) -> Path | None:
        """Move checkpoints of an earlier run (not resumed) into ``run_dir/previous-<time>/``."""
        existing = self.checkpoints()
        if self.partial_path.is_file():  # a within-epoch checkpoint of that run goes with them
            existing.append((-1, self.partial_path))
        if not existing:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest, i = self.run_dir / f"previous-{stamp}", 1
        while dest.exists():
            dest, i = self.run_dir / f"previous-{stamp}-{i}", i + 1
        dest.mkdir()
        for _, old in existing:
            os.replace(old, dest / old.name)
        if self.pointer.exists():
            os.replace(self.pointer, dest / self.pointer.name)
        warnings.warn(f"{self.run_dir} held checkpoints of an earlier run that this run did not "
                      f"resume from; moved them to {dest} instead of overwriting them", stacklevel=3)
        return dest

    def latest_path(self) -> Path | None:
        """Path named by the ``latest`` pointer (``None`` when there is no pointer)."""
        if not self.pointer.is_file():
            return None
        name = self.pointer.read_text(encoding="utf-8").strip()
        if not self.PATTERN.match(name):
            raise CheckpointCorruptError(
                f"checkpoint pointer {self.pointer} is corrupt (content {name[:80]!r}); write the "
                f"name of a checkpoint file into it, or {FRESH_RUN_HINT}")
        return self.run_dir / name

    def restore_latest(self, like: Any) -> tuple[Any, dict] | None:
        """Load the checkpoint named by ``latest`` into ``like``; ``None`` if there is none."""
        latest = self.latest_path()
        if latest is None:
            existing = self.checkpoints()
            if existing:
                raise CheckpointError(
                    f"{self.run_dir} holds {existing[-1][1].name} but no 'latest' pointer; to "
                    f"resume from it write '{existing[-1][1].name}' into {self.pointer}, or "
                    f"{FRESH_RUN_HINT}")
            self._owned = True
            return None
        try:
            tree, meta = load_checkpoint(latest, like)
        except CheckpointCorruptError as exc:
            raise CheckpointCorruptError(f"{exc}. {self._fallback_hint(latest)}") from exc
        except CheckpointError as exc:
            if latest.exists():
                raise
            raise CheckpointError(f"{exc}. {self._fallback_hint(latest)}") from exc
        self._resumed_epoch = int(meta.get("epoch", -1))
        self._owned = True
        return tree, meta

    def _fallback_hint(self, bad: Path) -> str:
        """Name the newest intact older checkpoint and how to resume from it."""
        for _, candidate in reversed(self.checkpoints()):
            if candidate == bad:
                continue
            try:
                read_checkpoint(candidate)
            except CheckpointError:
                continue
            return (f"An older intact checkpoint exists: {candidate}. To resume from it, move "
                    f"{bad.name} aside (e.g. rename it to {bad.name}.corrupt) and write "
                    f"'{candidate.name}' into {self.pointer}")
        return f"No older intact checkpoint exists in this run directory: {FRESH_RUN_HINT}"
