"""Run directories: unique default names, an exclusive lock per directory, atomic record writes,
the configuration fingerprint that resume compares, and the records of failed runs.

* ``default_run_dir`` / ``run_stamp``: ``outputs/<name>/seed<seed>/<YYYYmmdd-HHMMSS-micro>-<pid>``
  (``seeds<first>-<last>/`` for a group of ``trainer.replicas``),
  the same pattern as ``hydra.run.dir`` in ``conf/config.yaml``: two runs started in the same second
  never share a directory, and names still sort by start time (``trainer.resume=true`` picks the
  newest sibling with a checkpoint).
* ``RunLock``: an exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` held for the run's life, with the
  holder's pid and host written into it. A second run refuses with :class:`RunLockedError` naming the
  directory and the holder; a lock file left by a process that died is not locked any more and is
  taken over (where the file system has no ``flock``, the pid in the file is checked instead).
* ``archive_previous_run``: a fresh run in a directory that holds an earlier run's record, metrics or
  checkpoints first moves them into ``previous-<time>/``, so nothing of the earlier run is lost.
* ``math_config`` / ``config_fingerprint`` / ``config_diff``: the keys that change what a run
  computes, hashed; resume compares them with the run's and refuses a changed configuration.
* ``mark_record`` / ``sweep_summary``: the record of a run that failed or was interrupted, and the
  list of the jobs of a sweep that did not complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, RunLockedError

RECORD = "record.json"
LOCK = ".lock"

# ------------------------------------------------------------------------------------ run dirs
def run_stamp() -> str:
    """``YYYYmmdd-HHMMSS-ffffff-<pid>``: unique per process and microsecond, sorts by start time."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}"


def default_run_dir(name: str, seed: int, root: str | Path = "outputs", replicas: int = 1) -> Path:
    """``root/<name>/seed<seed>/<run_stamp()>`` (the pattern of ``hydra.run.dir``); a group of
    ``replicas`` > 1 (seeds ``seed .. seed+replicas-1``, see :mod:`pcjax.replicas`) goes to
    ``root/<name>/seeds<first>-<last>/<run_stamp()>``."""
    seeds = f"seed{seed}" if replicas == 1 else f"seeds{seed}-{seed + replicas - 1}"
    return Path(root) / name / seeds / run_stamp()


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a uniquely named, fsynced temporary file in the same
    directory and ``os.replace`` (concurrent writers never share a temporary file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=float)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(run_dir: str | Path) -> dict | None:
    """The parsed ``record.json`` of ``run_dir``; ``None`` when it is missing or not intact JSON."""
    try:
        data = json.loads((Path(run_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


#: Files of a run that a fresh run in the same directory would overwrite or append to (``.hydra``:
#: the command line's copy of the run's configuration and overrides).
RUN_FILES = (RECORD, "metrics.jsonl", "latest", "partial.pcjax", ".hydra", "train.log")

#: The run's log (Python ``logging`` of the ``pcjax`` loggers: start, compilation, every epoch's
#: metrics, checkpoints, the end or the error), written by :class:`RunLog`.
LOG = "train.log"


def archive_previous_run(run_dir: str | Path) -> Path | None:
    """Before a fresh (not resumed) run starts in ``run_dir``: move an earlier run's record, metrics
    and checkpoints into ``run_dir/previous-<time>/`` (with a warning) so that nothing of it is
    overwritten or mixed into the new run's files. Returns the archive, or ``None`` if there was nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    old = [p for p in run_dir.iterdir() if p.name in RUN_FILES or re.match(r"^ckpt_\d+\.pcjax$", p.name)]
    if not old:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, i = run_dir / f"previous-{stamp}", 1
    while dest.exists():
        dest, i = run_dir / f"previous-{stamp}-{i}", i + 1
    dest.mkdir()
    for p in old:
        os.replace(p, dest / p.name)
    warnings.warn(f"{run_dir} held the files of an earlier run ({', '.join(sorted(p.name for p in old))}); "
                  f"moved them to {dest} before starting a fresh run there", stacklevel=2)
    return dest


# ---------------------------------------------------------------------------------------- lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock_holder(path: str | Path, *, attempts: int = 1) -> dict:
    """The holder a lock file names (``{"pid", "host", "started"}``), or ``{}`` when the file is missing,
    empty or not a JSON object; ``attempts`` reads 10 ms apart, for a lock just taken whose holder has
    not written its pid yet. Reads only: never takes the lock."""
    for i in range(attempts):
        if i:
            time.sleep(0.01)
        try:
            holder = json.loads(Path(path).read_text(encoding="utf-8").strip() or "null")
        except (OSError, ValueError):
            continue
        if isinstance(holder, dict):
            return holder
    return {}


class RunLock:
    """Exclusive lock on a run directory for the life of one run (``with RunLock(d): ...`` or
    ``acquire()`` / ``release()``). See the module docstring."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _holder(self) -> dict:
        return read_lock_holder(self.path, attempts=20)  # the holder writes its pid right after locking

    def _refuse(self, holder: dict) -> RunLockedError:
        who = f"pid {holder.get('pid', '?')}" + (f" on {holder['host']}" if holder.get("host") else "")
        since = f", started {holder['started']}" if holder.get("started") else ""
        return RunLockedError(
            f"run directory {self.run_dir} is in use by another run ({who}{since}; lock file {self.path}). "
            "Wait for that run to end, or give this run its own directory (leave hydra.run.dir at its "
            "default, or choose another trainer.resume / run_dir).")

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError`; a stale lock (its holder died) is taken over."""
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:
                os.close(fd)
                return self._acquire_pidfile()
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._refuse(self._holder()) from None
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                return self._acquire_pidfile()
            try:  # the file may have been removed (by a releasing holder) between open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self._holder_from_fd(fd)
            if previous.get("pid") not in (None, os.getpid()):
                warnings.warn(f"{self.path}: taking over the stale lock of pid {previous['pid']} "
                              f"(that process no longer holds it)", stacklevel=2)
            self._write(fd)
            self._fd = fd
            return self
        raise RunLockedError(f"could not lock {self.path}: it keeps being replaced by another process")

    @staticmethod
    def _holder_from_fd(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 4096).decode("utf-8", "replace").strip()
            return json.loads(text) if text else {}
        except (OSError, json.JSONDecodeError):
            return {}

    @staticmethod
    def _write(fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)

    def _acquire_pidfile(self) -> RunLock:
        """Fallback without ``flock``: O_CREAT|O_EXCL, stale when its pid (on this host) is dead."""
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                pid = holder.get("pid")
                if holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                    warnings.warn(f"{self.path}: removing the stale lock of pid {pid} (that process is gone)",
                                  stacklevel=3)
                    self.path.unlink(missing_ok=True)
                    continue
                raise self._refuse(holder) from None
            self._write(fd)
            self._fd = fd
            return self
        raise RunLockedError(f"could not lock {self.path}: it keeps being replaced by another process")

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# ---------------------------------------------------------------------------------- fingerprint
#: Config keys that do not change what a run computes, so resuming with other values is allowed:
#: where files and logs go (``name``, ``run_dir``, ``tracking``, ``dataset.root``), how the run is
#: shown or driven (``trainer.progress``, ``trainer.resume``, ``trainer.checkpoint``,
#: ``trainer.extend_epochs``), metadata (``reference``, ``plugins``: the names they register are part
#: of the config), the stopping guard (``trainer.divergence_threshold``) and execution strategies that
#: give the same results (``trainer.eval_batch_size``, ``trainer.loop``, ``algorithm.unroll``,
#: ``algorithm.error_front``). ``trainer.chunks_per_epoch`` is *not* among them: it changes the
#: augmentation keys. ``trainer.epochs`` is compared on its own (see ``trainer.extend_epochs``).
NON_MATH_KEYS: tuple[str, ...] = (
    "name", "run_dir", "plugins", "reference", "tracking",
    "dataset.root", "dataset.download",
    "trainer.progress", "trainer.resume", "trainer.checkpoint", "trainer.checkpoint_minutes", "trainer.extend_epochs",
    "trainer.divergence_threshold", "trainer.compile_cache", "trainer.eval_batch_size", "trainer.loop", "trainer.diagnostics", "trainer.devices",
    "algorithm.unroll", "algorithm.error_front", "algorithm.xla_fusion",
)
#: Compared by :func:`check_resume_config` on its own rules, so left out of the fingerprint too.
_SEPARATE_KEYS: tuple[str, ...] = ("trainer.epochs",)


def _drop(c: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = c
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def math_config(c: dict) -> dict:
    """``c`` without :data:`NON_MATH_KEYS` (and ``trainer.epochs``, compared on its own): the part of a
    configuration that determines what a run computes."""
    out = json.loads(json.dumps(c, default=str))
    for key in NON_MATH_KEYS + _SEPARATE_KEYS:
        _drop(out, key)
    return out


def config_fingerprint(c: dict) -> str:
    """SHA-256 (first 16 hex digits) of :func:`math_config` as canonical JSON."""
    blob = json.dumps(math_config(c), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _flatten(c: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(c, dict):
        return {prefix[:-1]: c}
    out: dict[str, Any] = {}
    for k, v in c.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old: dict, new: dict, defaults: dict | None = None) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every key of :func:`math_config` that differs. A key the
    old configuration lacks (added to the schema since) counts as unchanged when ``new`` holds its
    schema default (``defaults``, a full default config)."""
    a, b = _flatten(math_config(old)), _flatten(math_config(new))
    d = _flatten(math_config(defaults)) if defaults is not None else {}
    missing = object()
    changes = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va is missing and key in d and vb == d[key]:
            continue
        if va != vb:
            changes.append((key, "<absent>" if va is missing else va, "<absent>" if vb is missing else vb))
    return changes


def check_resume_config(run_dir: str | Path, saved: dict, current: dict, *, defaults: dict | None = None,
                        saved_epochs: int | None, extend: bool) -> None:
    """Refuse (``ConfigError``) to resume ``run_dir`` with a configuration whose maths differ from the
    run's own (``saved``), listing the changed keys; ``trainer.epochs`` may only grow, and only with
    ``trainer.extend_epochs=true``."""
    changes = [] if config_fingerprint(saved) == config_fingerprint(current) else config_diff(saved, current, defaults)
    new_epochs = int(current["trainer"]["epochs"])
    lines = [f"  {k}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}" for k, a, b in changes]
    epoch_note = ""
    if saved_epochs is not None and new_epochs != saved_epochs and not (extend and new_epochs > saved_epochs):
        lines.append(f"  trainer.epochs: {saved_epochs} -> {new_epochs}")
        epoch_note = (" To train a run for more epochs, set trainer.extend_epochs=true (the learning-rate "
                      "schedule keeps its original length)." if new_epochs > saved_epochs else
                      " A run cannot be shortened on resume.")
    if lines:
        raise ConfigError(
            f"cannot resume {run_dir}: the configuration differs from the run's in {len(lines)} "
            f"key(s) that change what it computes:\n" + "\n".join(lines) +
            f"\nResume with the run's own values, or start a fresh run (trainer.resume=false).{epoch_note}")


# ------------------------------------------------------------------------------ failure records
def minimal_record(meta: dict, status: str) -> dict:
    """A run record for a run that ended before its first epoch (fields as in ``pcjax.training.fit``)."""
    from .tracking import git_commit, hardware_info

    c = meta.get("config") or {}
    return {
        "schema": 1, **{k: meta.get(k) or "unknown" for k in ("name", "dataset", "model", "algorithm")},
        "seed": c.get("seed"), "config": c, "reference": meta.get("reference"),
        "hardware": hardware_info(), "git_commit": git_commit(), "status": status,
        "epochs": [], "inference_trace": None, "summary": {},
    }


def mark_record(run_dir: str | Path, status: str, meta: dict | None = None, **fields: Any) -> dict:
    """Set ``status`` (and ``fields``) on ``run_dir/record.json``, keeping everything else; a record
    that is missing or not intact is replaced by :func:`minimal_record`. A ``diverged`` record keeps
    that status when marked ``failed`` (the divergence is the failure)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record is None:
        record = minimal_record(meta or {}, status)
    if not (status == "failed" and record.get("status") == "diverged"):
        record["status"] = status
    record.update(fields)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RECORD, record)
    return record


def describe_error(err: BaseException) -> str:
    """``ErrorType: message`` of an exception, for a record's ``error`` field."""
    return f"{type(err).__name__}: {err}"


def job_meta(cfg: Any) -> dict:
    """Record fields (name, dataset, model, algorithm, config) of a job's config, as far as they can
    be worked out from a config that may be invalid."""
    meta: dict[str, Any] = {}
    try:
        from omegaconf import OmegaConf

        c = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    except Exception:  # noqa: BLE001 - e.g. an interpolation that cannot be resolved
        try:
            from omegaconf import OmegaConf

            c = OmegaConf.to_container(cfg, resolve=False)
        except Exception:  # noqa: BLE001
            c = {}
    meta["config"] = c
    get = lambda *p: (c.get(p[0], {}) or {}).get(p[1]) if len(p) == 2 else c.get(p[0])  # noqa: E731
    meta["dataset"], meta["model"] = str(get("dataset", "name") or ""), str(get("model", "name") or "")
    try:
        from .assemble import algorithm_label

        meta["algorithm"] = algorithm_label(c)
    except Exception:  # noqa: BLE001 - an invalid config may not have a label
        meta["algorithm"] = str(get("algorithm", "label") or get("algorithm", "name") or "")
    meta["name"] = str(get("name") or f"{meta['dataset']}_{meta['model']}_{meta['algorithm']}")
    return meta


# --------------------------------------------------------------------------------------- sweeps
BAD_STATUSES = ("failed", "diverged", "interrupted", "running")


def sweep_failures(sweep_dir: str | Path) -> tuple[int, list[dict]]:
    """(number of job records, the failed ones) under ``sweep_dir``; each failure is
    ``{"dir", "status", "error", "overrides"}``. ``running`` counts as failed: the job ended
    without finishing its record."""
    sweep_dir = Path(sweep_dir)
    files = sorted(sweep_dir.rglob(RECORD)) if sweep_dir.is_dir() else []
    failures = []
    for path in files:
        record = read_record(path.parent) or {"status": "failed", "error": f"{path} is not intact JSON"}
        status = record.get("status")
        if status not in BAD_STATUSES:
            continue
        overrides = record.get("overrides")
        if overrides is None:
            try:
                from omegaconf import OmegaConf

                overrides = list(OmegaConf.load(path.parent / ".hydra" / "overrides.yaml"))
            except Exception:  # noqa: BLE001 - no Hydra files
                overrides = []
        error = record.get("error") or (
            f"diverged: {record['divergence']}" if record.get("divergence") else f"status {status}")
        failures.append({"dir": str(path.parent), "status": status, "error": error, "overrides": overrides})
    return len(files), failures


def sweep_summary(sweep_dir: str | Path) -> tuple[str, int]:
    """A short report of the jobs of a sweep and the number that failed."""
    total, failures = sweep_failures(sweep_dir)
    if not failures:
        return f"sweep {sweep_dir}: all {total} jobs complete", 0
    lines = [f"sweep {sweep_dir}: {len(failures)} of {total} jobs did not complete:"]
    for f in failures:
        first = str(f["error"]).strip().splitlines()[0] if str(f["error"]).strip() else ""
        lines.append(f"  {Path(f['dir']).name} [{' '.join(map(str, f['overrides']))}] {f['status']}: {first}")
        lines.append(f"    record: {Path(f['dir']) / RECORD}")
    return "\n".join(lines), len(failures)


#: errno values of a write that failed because of the folder or the disk, not the program.
FULL_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def is_write_error(err: BaseException, folder: str | Path | None = None) -> bool:
    """Whether ``err`` is an OSError of a write that failed because of the disk or the folder: a
    read-only or full file system anywhere, no permission to write inside ``folder``."""
    if not isinstance(err, OSError):
        return False
    if err.errno in FULL_ERRNOS:
        return True
    if err.errno not in (errno.EACCES, errno.EPERM) or folder is None or not err.filename:
        return False
    try:
        Path(os.fsdecode(err.filename)).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _cause(err: OSError) -> str:
    return {errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is used up", errno.EACCES: "no permission to write there",
            errno.EPERM: "no permission to write there", errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.ENOENT: "a part of the path cannot be created there",
            errno.EEXIST: "a file is in the way of a folder"}.get(err.errno, err.strerror or str(err))


def check_output_folder(folder: str | Path, setting: str = "hydra.run.dir") -> None:
    """Create ``folder`` (as Hydra is about to) and write and delete a small probe file in it; a
    ``ConfigError`` naming the folder, the cause and the fix when that fails (read-only, full, no
    permission, a file in the way), before anything of the run is written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pcjax-write-check-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ConfigError(write_error_message(err, folder, setting=setting, started=False)) from err


def write_error_message(err: OSError, folder: str | Path | None, *, setting: str = "hydra.run.dir",
                        started: bool = True, resume: str | None = None) -> str:
    """One paragraph for a write that failed (``err``) in the output ``folder``: the file, the cause,
    the fix, and what is kept."""
    target = err.filename or folder
    fix = (f"free space on that disk, or send the run elsewhere with {setting}=DIR (a folder you can write)"
           if err.errno in (errno.ENOSPC, errno.EDQUOT) else
           f"choose a folder you can write with {setting}=DIR (or make {folder or target} writable)")
    if not started:
        kept = "Nothing was trained or recorded."
    elif resume:
        kept = ("The record and the checkpoints written before the failure are intact (each is written to a "
                f"temporary file and then renamed); once fixed, continue the run with:\n  {resume}")
    else:
        kept = ("The files written before the failure are intact (each is written to a temporary file and then "
                "renamed); no epoch had been checkpointed yet, so run the command again once fixed.")
    return f"cannot write {target}: {_cause(err)} ({err.strerror or err}). To fix: {fix}. {kept}"


class RunLog:
    """``run_dir/train.log`` receives the ``pcjax`` loggers' records (INFO and above) while the run
    holds its directory: opened once the lock is held and an earlier run's files are archived (a
    resumed run appends to its log), closed when the run ends. The console is left to the caller's
    logging configuration (the command line shows warnings only: the progress bar is the console's)."""

    FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOG
        self.handler: logging.Handler | None = None
        self.level = logging.NOTSET

    def start(self) -> "RunLog":
        """Attach the file handler to the ``pcjax`` logger (INFO records are made while it is attached)."""
        logger = logging.getLogger("pcjax")
        self.handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter(self.FORMAT))
        self.level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self.handler)
        return self

    def stop(self) -> None:
        """Detach and close the handler; the logger's level is restored."""
        if self.handler is None:
            return
        logger = logging.getLogger("pcjax")
        logger.removeHandler(self.handler)
        logger.setLevel(self.level)
        self.handler.close()
        self.handler = None
