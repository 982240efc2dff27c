"""Where a run directory stands, in one line: its status, epochs done of the planned ones, the last
validation accuracy, the time per epoch and the time left, whether a live process holds it, and what a
restart would resume from.

    >>> run_progress("results/runs/mnist_resmlp64e5_pcalm_se/seed0")
    RunProgress(status='running', epochs_done=1, epochs=5, ...)
    >>> describe_progress("results/runs/mnist_resmlp64e5_pcalm_se/seed0")
    '    running  1/5 epochs, val 94.08 %, 1,049 s/epoch, about 1 h 1 min left (pid 14712)'

The time left is (epochs to go) x (mean seconds of the epochs done), less the time since the record was
last written while the run is live; it is an estimate from the epochs so far, not a promise. Before the
first epoch ends, a within-epoch checkpoint gives the estimate instead: its epoch's seconds so far
scaled to the whole epoch, ``seconds x chunks_total / chunks_done``, marked ``(est.)``, and the line says
how far the epoch is (``epoch 1: 7/39 chunks``).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .collapse import find_collapse
from .runs import LOCK, _pid_alive, read_lock_holder, read_record

__all__ = ["RunProgress", "run_progress", "describe_progress", "progress_details", "lock_holder"]


def lock_holder(run_dir: str | Path) -> dict | None:
    """The process named in ``run_dir/.lock`` (``{"pid", "host", "started"}``) when it is alive on this
    host or runs on another host (which cannot be checked from here); None when there is no lock file
    or its process is gone. Reads the file only: never takes the lock, so a run starting meanwhile is
    not disturbed."""
    holder = read_lock_holder(Path(run_dir) / LOCK)
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return None
    if holder.get("host") not in (None, socket.gethostname()):
        return holder
    return holder if _pid_alive(pid) and pid != os.getpid() else None


@dataclass(frozen=True)
class RunProgress:
    """What :func:`run_progress` reads from a run directory.

    ``status``: ``not run`` (no record, no checkpoint, no log), the record's status (``running``,
    ``complete``, ``diverged``, ``failed``, ``interrupted``), or ``stopped`` for a run killed without a
    chance to say so: a record that says ``running``, or a log with neither record nor checkpoint, and
    no live process holding the directory. ``within_epoch``:
    ``(epoch, chunks)`` of a within-epoch checkpoint a restart resumes from. ``seconds_left``: None
    when no epoch has finished (nothing to estimate from) or the run is not going on. ``collapse``: the
    finite blow-up :func:`pcjax.collapse.find_collapse` finds in the finished epochs, or None."""

    status: str
    epochs_done: int = 0
    epochs: int | None = None
    val_acc: float | None = None
    seconds_per_epoch: float | None = None
    seconds_left: float | None = None
    within_epoch: tuple[int, int] | None = None
    checkpointed_epochs: int = 0
    holder: dict | None = None
    chunks_total: int | None = None
    estimated: bool = False
    collapse: dict | None = None


def _partial_meta(run_dir: Path) -> dict:
    """The within-epoch checkpoint's header meta ({} when there is none or it is unreadable)."""
    from .checkpoint import PARTIAL_NAME, read_checkpoint_meta

    try:
        return read_checkpoint_meta(run_dir / PARTIAL_NAME)
    except Exception:  # noqa: BLE001 - none, or unreadable: the resume names a corrupt one
        return {}


def _planned_epochs(run_dir: Path) -> int | None:
    """``trainer.epochs`` from the header of the checkpoint ``latest`` names (None when unreadable)."""
    from .checkpoint import CheckpointManager, read_checkpoint_meta

    try:
        epochs = read_checkpoint_meta(CheckpointManager(run_dir).latest_path())["config"]["trainer"]["epochs"]
    except Exception:  # noqa: BLE001 - no or an unreadable checkpoint: the planned epochs stay unknown
        return None
    return epochs if isinstance(epochs, int) else None


def _chunks_total(meta: dict) -> int | None:
    """How many chunks the checkpoint's epoch has (``chunks_total``); for a checkpoint written before that
    field existed, ``trainer.chunks_per_epoch``, its upper bound (an epoch of fewer batches than that
    has fewer chunks), so the estimate errs long."""
    if isinstance(meta.get("chunks_total"), int):
        return meta["chunks_total"]
    per_epoch = (((meta.get("config") or {}).get("trainer") or {}).get("chunks_per_epoch"))
    return int(per_epoch) if isinstance(per_epoch, int) else None


def _seconds_since(path: Path, now: float | None) -> float:
    """Seconds since ``path`` was last written (0 when it cannot be read): the part of the time left a
    live run has already spent since it wrote the numbers the estimate comes from."""
    try:
        return (now if now is not None else time.time()) - path.stat().st_mtime
    except OSError:
        return 0.0


def run_progress(run_dir: str | Path, *, now: float | None = None) -> RunProgress:
    """Read ``run_dir``'s record, lock and checkpoints (see :class:`RunProgress`)."""
    from .checkpoint import PARTIAL_NAME
    from .experiment import _checkpointed_epochs, _within_epoch

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    holder = lock_holder(run_dir)
    within, ckpt = _within_epoch(run_dir), _checkpointed_epochs(run_dir)
    meta = _partial_meta(run_dir) if within else {}
    total = _chunks_total(meta)
    if record is None:
        started = (run_dir / "train.log").is_file() or (run_dir / ".hydra").is_dir()
        status = "running" if holder else ("interrupted" if within or ckpt else "stopped" if started else "not run")
        spe = left = epochs = None
        seconds, trainer = meta.get("seconds"), (meta.get("config") or {}).get("trainer") or {}
        if within and total and within[1] and isinstance(seconds, (int, float)) and not ckpt:
            spe = float(seconds) * total / within[1]
            epochs = int(trainer["epochs"]) if isinstance(trainer.get("epochs"), int) else None
            if epochs is not None:
                left = max(epochs * spe - float(seconds), 0.0)
                if status == "running":
                    left = max(left - _seconds_since(run_dir / PARTIAL_NAME, now), 0.0)
        if ckpt and epochs is None:  # e.g. a replica group's folder: its records live in its seed folders
            epochs = _planned_epochs(run_dir)
            if not holder and not within and epochs is not None and ckpt >= epochs:
                status = "complete"  # every planned epoch checkpointed: nothing to resume
        return RunProgress(status, epochs_done=ckpt, epochs=epochs, seconds_per_epoch=spe, seconds_left=left,
                           within_epoch=within, checkpointed_epochs=ckpt, holder=holder, chunks_total=total,
                           estimated=spe is not None)
    status = str(record.get("status") or "unknown")
    if status == "running" and holder is None:
        status = "stopped"
    if status != "running":
        holder = None
    done = [e for e in record.get("epochs") or [] if isinstance(e, dict)]
    trainer = (record.get("config") or {}).get("trainer") or {}
    epochs = int(trainer["epochs"]) if isinstance(trainer.get("epochs"), int) else None
    secs = [float(e["seconds"]) for e in done if isinstance(e.get("seconds"), (int, float))]
    spe = sum(secs) / len(secs) if secs else None
    left = None
    if spe is not None and epochs is not None and status in ("running", "stopped", "interrupted"):
        left = max(epochs - len(done), 0) * spe
        if status == "running":
            left = max(left - _seconds_since(run_dir / "record.json", now), 0.0)
    val = done[-1].get("val_acc") if done else None
    return RunProgress(status, len(done), epochs, float(val) if isinstance(val, (int, float)) else None, spe, left,
                       within if status != "complete" else None, ckpt, holder, total, collapse=find_collapse(done))


def _duration(seconds: float) -> str:
    """``about 1 h 1 min`` / ``about 7 min`` / ``under a minute``."""
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return "about " + (f"{hours} h {minutes} min" if hours else f"{minutes} min")


def describe_progress(run_dir: str | Path, *, now: float | None = None) -> str:
    """One line: ``<status>  <epochs done>/<epochs> epochs, val <acc> %, <s>/epoch, about <time> left``,
    with the holding pid of a live run and what a restart resumes from (see the module docstring)."""
    p = run_progress(run_dir, now=now)
    return f"{p.status:>11}  {progress_details(p)}".rstrip()


def progress_details(p: RunProgress) -> str:
    """:func:`describe_progress`'s line without the status."""
    parts = []
    if p.status != "not run" and (p.epochs_done or p.epochs):
        parts.append(f"{p.epochs_done}/{p.epochs if p.epochs is not None else '?'} epochs")
    if p.status == "running" and p.within_epoch and p.chunks_total:
        parts.append(f"epoch {p.within_epoch[0]}: {p.within_epoch[1]}/{p.chunks_total} chunks")
    if p.val_acc is not None:
        parts.append(f"val {100 * p.val_acc:.2f} %")
    if p.collapse is not None:
        c = p.collapse
        parts.append(f"collapsed at epoch {c['epoch']} (from {100 * c['best_acc']:.2f} % at epoch {c['best_epoch']})")
    if p.seconds_per_epoch is not None and p.status not in ("complete", "diverged"):
        parts.append(f"{p.seconds_per_epoch:,.0f} s/epoch" + (" (est.)" if p.estimated else ""))
    if p.seconds_left is not None and p.status == "running":
        parts.append(f"{_duration(p.seconds_left)} left")
    text = ", ".join(parts) or ("no epoch finished yet" if p.status == "running" else "")
    if p.holder:
        where = f" on {p.holder['host']}" if p.holder.get("host") not in (None, socket.gethostname()) else ""
        text += f" (pid {p.holder['pid']}{where})"
    if p.status in ("stopped", "interrupted", "failed"):
        if p.within_epoch:
            resume = f"epoch {p.within_epoch[0]}, chunk {p.within_epoch[1]}"
        elif p.checkpointed_epochs:
            resume = f"the end of epoch {p.checkpointed_epochs}"
        else:
            resume = None
        text += "; " if text else ""
        text += (f"resumes from {resume}" + (f" ({_duration(p.seconds_left)} to go)" if p.seconds_left else "")
                 if resume else "no checkpoint: starts again")
    return text
