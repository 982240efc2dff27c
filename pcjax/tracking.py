"""Experiment tracking: a small ``Tracker`` protocol and its backends.

Every backend receives the same three calls::

    tracker = make_tracker(["wandb", "jsonl", "console"], project="pcjax")
    tracker.start(config, run_dir)             # resolved config, one directory per run
    tracker.log({"train_loss": 0.3, "energy": [1.2, 0.4]}, step=1)
    tracker.finish({"test_acc": 0.97})

Weights & Biases runs **offline** unless ``mode="online"`` is requested explicitly; its files
land under ``run_dir`` (``run_dir/wandb/offline-run-*``) and can be uploaded later with
``wandb sync``.  ``git_commit`` and ``hardware_info`` describe where a run was produced.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

Metrics = Mapping[str, Any]


@runtime_checkable
class Tracker(Protocol):
    """What the training loop talks to; backends only implement these three methods."""

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Begin a run: record the resolved ``config``; files go under ``run_dir``."""

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Record scalar (or list-valued, e.g. per-layer) metrics at ``step``."""

    def finish(self, summary: dict | None = None) -> None:
        """End the run, recording the final ``summary`` if given."""


def _to_python(value: Any) -> Any:
    """Convert numpy/JAX scalars and arrays (and containers of them) to plain Python."""
    if isinstance(value, Mapping):
        return {str(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    if isinstance(value, Sequence):  # lists, tuples, OmegaConf ListConfig
        return [_to_python(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / jax arrays and scalars
        return _to_python(value.tolist())
    return value


def flatten_metrics(metrics: Metrics) -> dict[str, Any]:
    """Flatten list-valued metrics into ``name/0, name/1, ...`` keys (nested lists recurse)."""
    flat: dict[str, Any] = {}
    for key, value in _to_python(dict(metrics)).items():
        if isinstance(value, list):
            for sub_key, sub_value in flatten_metrics(
                {str(i): v for i, v in enumerate(value)}
            ).items():
                flat[f"{key}/{sub_key}"] = sub_value
        elif isinstance(value, dict):
            for sub_key, sub_value in flatten_metrics(value).items():
                flat[f"{key}/{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


class NullTracker:
    """Tracker that records nothing (``"none"``)."""

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Do nothing."""

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Do nothing."""

    def finish(self, summary: dict | None = None) -> None:
        """Do nothing."""


class JSONLTracker:
    """Append one JSON object ``{"step": ..., **metrics}`` per ``log`` call to ``run_dir/<filename>``."""

    def __init__(self, filename: str = "metrics.jsonl") -> None:
        self.filename = filename
        self.path: Path | None = None
        self._fh: Any = None

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Open (append mode) ``run_dir/metrics.jsonl``, creating ``run_dir`` if needed."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / self.filename
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Write one line and flush it, so a crash loses at most the current line."""
        if self._fh is None:
            raise RuntimeError("JSONLTracker.log called before start()")
        row = {"step": int(step), **_to_python(dict(metrics))}
        self._fh.write(json.dumps(row, allow_nan=True) + "\n")
        self._fh.flush()

    def finish(self, summary: dict | None = None) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    if is_matrix(value):
        return f"<{len(value)}x{len(value[0])}>"
    if isinstance(value, list):
        shown = ", ".join(_format_value(v) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    return str(value)


class ConsoleTracker:
    """Print one compact line per ``log`` call, e.g. ``[step 3] train_loss=0.3102 energy=[1.2, 0.4]``."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Print where the run writes its files."""
        print(f"{self.prefix}[run] {run_dir}", flush=True)

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Print the metrics of one step."""
        parts = [f"{k}={_format_value(v)}" for k, v in _to_python(dict(metrics)).items()]
        print(f"{self.prefix}[step {step}] " + " ".join(parts), flush=True)

    def finish(self, summary: dict | None = None) -> None:
        """Print the summary, if any."""
        if summary:
            parts = [f"{k}={_format_value(v)}" for k, v in _to_python(dict(summary)).items()]
            print(f"{self.prefix}[summary] " + " ".join(parts), flush=True)


class WandbTracker:
    """Weights & Biases backend; ``mode="offline"`` by default (``"online"`` only on request).

    ``wandb`` is imported lazily in :meth:`start`.  Run files are written under
    ``run_dir/wandb/``; list-valued metrics become ``name/0, name/1, ...`` keys, and a 2-D metric
    (rows = inference steps, columns = layers, e.g. ``inference_trace``) becomes a ``wandb.Table``
    plus a line plot with one line per layer (``<name>_plot``).  The environment variable
    ``WANDB_MODE=disabled`` switches the backend off without importing wandb.
    """

    MODES = ("offline", "online", "disabled")

    def __init__(
        self,
        project: str = "pcjax",
        mode: str = "offline",
        entity: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
        group: str | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"wandb mode must be one of {self.MODES}, got {mode!r}")
        self.project, self.mode, self.entity = project, mode, entity
        self.tags, self.name, self.group = tuple(tags), name, group
        self.run: Any = None
        self._off = False

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Start a wandb run in ``run_dir`` logging the resolved ``config``."""
        self._off = self.mode == "disabled" or os.environ.get("WANDB_MODE") == "disabled"
        if self._off:
            return
        import wandb  # lazy: importing wandb is slow and optional

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(run_dir),
            config=_to_python(dict(config)),
            tags=list(self.tags) or None,
            name=self.name,
            group=self.group,
            reinit="create_new",  # several runs at once (trainer.replicas); each tracker finishes its own
        )

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Log flattened metrics at ``step``; 2-D metrics as a table and a per-layer line plot."""
        if self._off:
            return
        if self.run is None:
            raise RuntimeError("WandbTracker.log called before start()")
        plain, tables = {}, {}
        for key, value in _to_python(dict(metrics)).items():
            (tables if is_matrix(value) else plain)[key] = value
        row = flatten_metrics(plain)
        if tables:
            import wandb

            for key, rows in tables.items():
                columns = ["step"] + [f"layer_{i}" for i in range(len(rows[0]))]
                row[key] = wandb.Table(columns=columns, data=[[t, *r] for t, r in enumerate(rows)])
                row[f"{key}_plot"] = wandb.plot.line_series(
                    xs=list(range(len(rows))), ys=[list(col) for col in zip(*rows)], keys=columns[1:],
                    title=f"{key} (epoch {step})", xname="inference step")
        self.run.log(row, step=int(step))

    def finish(self, summary: dict | None = None) -> None:
        """Write ``summary`` into the run summary and close the run."""
        if self.run is None:
            return
        if summary:
            self.run.summary.update(flatten_metrics(summary))
        self.run.finish()
        self.run = None


def is_matrix(value: Any) -> bool:
    """True for a non-empty list of equally long, non-empty lists of numbers (a 2-D metric)."""
    return (isinstance(value, list) and bool(value) and all(isinstance(r, list) and r for r in value)
            and len({len(r) for r in value}) == 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in value for v in r))


class MultiTracker:
    """Forward every call to several trackers (all of them finish even if one fails)."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def start(self, config: dict, run_dir: str | Path) -> None:
        """Start every tracker."""
        for tracker in self.trackers:
            tracker.start(config, run_dir)

    def log(self, metrics: dict[str, float | int | list], step: int) -> None:
        """Log to every tracker."""
        for tracker in self.trackers:
            tracker.log(metrics, step)

    def finish(self, summary: dict | None = None) -> None:
        """Finish every tracker, re-raising the first error afterwards."""
        error: BaseException | None = None
        for tracker in self.trackers:
            try:
                tracker.finish(summary)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                error = error or exc
        if error is not None:
            raise error


BACKENDS: dict[str, type] = {
    "wandb": WandbTracker,
    "jsonl": JSONLTracker,
    "console": ConsoleTracker,
    "none": NullTracker,
}


def make_tracker(names: Sequence[str] | str, **options: Any) -> Tracker:
    """Build a tracker from backend names in ``{"wandb", "jsonl", "console", "none"}``.

    ``names`` may also be a comma-separated string.  Each backend receives the ``options`` its
    constructor accepts (e.g. ``project``, ``mode``, ``entity``, ``tags`` for wandb); options that
    no backend accepts raise ``TypeError``.  Several names give a :class:`MultiTracker`.
    """
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    wanted = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in wanted if n not in BACKENDS]
    if unknown:
        raise ValueError(
            f"unknown tracker backend(s) {unknown}; valid names are {sorted(BACKENDS)}"
        )
    accepted = {n: set(inspect.signature(cls).parameters) for n, cls in BACKENDS.items()}
    stray = set(options) - set().union(*accepted.values())
    if stray:
        raise TypeError(f"unknown tracker option(s) {sorted(stray)}")
    trackers: list[Tracker] = []
    for name in dict.fromkeys(wanted):  # de-duplicate, keep order
        if name == "none":
            continue
        kwargs = {k: v for k, v in options.items() if k in accepted[name]}
        trackers.append(BACKENDS[name](**kwargs))
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else MultiTracker(trackers)


def git_commit(path: str | Path = ".") -> str | None:
    """Commit hash of the git checkout containing ``path`` (``None`` outside a repo; never raises)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=str(path),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except Exception:  # noqa: BLE001 - no git, bad path, timeout: all mean "unknown"
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def hardware_info() -> dict[str, Any]:
    """Describe the machine: JAX backend, device kind and count, CPUs, platform and versions."""
    info: dict[str, Any] = {}
    try:
        import jax

        devices = jax.devices()
        info.update(backend=jax.default_backend(),
                    device_kind=devices[0].device_kind if devices else None,
                    device_count=len(devices))
    except Exception as exc:  # noqa: BLE001 - report what is known
        jax = sys.modules.get("jax")  # type: ignore[assignment]
        info.update(backend=None, device_kind=None, device_count=0, jax_error=str(exc))
    info.update(
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        python=sys.version.split()[0],
        jax=getattr(jax, "__version__", None),
    )
    return info
