"""Build a run from a configuration (Hydra or plain dataclass) and execute it.

config -> dataset + model + algorithm + tracker -> ``fit`` -> run record. ``run_experiment`` is
what ``experiments/train.py`` calls; tests call it directly without Hydra.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .assemble import (algorithm_label, beta_schedule, build, build_model_from_config,  # noqa: F401 (re-exported)
                       build_runtime, energy_spec, to_dict)
from .config import Config
from .data import load_dataset
from .data.pipeline import AugmentSpec
from .errors import ConfigError
from .plugins import load_plugins
from .training import TrainerConfig, fit

log = logging.getLogger(__name__)


def _resume_dir(run_dir: Path, resume: Any) -> Path | None:
    """The run directory to continue: an explicit path; for ``true``/``latest`` ``run_dir`` itself when
    it holds a checkpoint, else the newest sibling run with one (run directory names sort by start
    time); ``None`` for a fresh run (with a warning when ``true``/``latest`` found nothing to resume)."""
    if resume in (False, None, "false", "False"):
        return None
    from .checkpoint import PARTIAL_NAME, has_checkpoint

    if isinstance(resume, str) and resume not in ("true", "True", "latest"):
        path = Path(resume)
        if not has_checkpoint(path):
            raise ConfigError(f"trainer.resume={resume}: no checkpoint found there (expected {path / 'latest'} "
                              f"or {path / PARTIAL_NAME})")
        return path
    if has_checkpoint(run_dir):
        return run_dir
    candidates = sorted(p for p in run_dir.parent.glob("*") if has_checkpoint(p))
    if not candidates:
        _warn_nothing_to_resume(run_dir, resume)
    return candidates[-1] if candidates else None


def _warn_nothing_to_resume(run_dir: Path, resume: Any) -> None:
    """Say that ``trainer.resume=true`` found no checkpoint to continue, so the run starts fresh."""
    import warnings

    shown = resume if isinstance(resume, str) else str(resume).lower()
    warnings.warn(f"trainer.resume={shown}: no checkpoint in {run_dir} nor in the runs beside it ({run_dir.parent}), "
                  "so nothing to resume: starting a fresh run. To resume a particular run, pass its directory: "
                  "trainer.resume=DIR", stacklevel=4)


def _saved_run(run_dir: Path) -> tuple[dict | None, int | None, int | None]:
    """(config, schedule epochs, target epochs) of the run in ``run_dir``, from its latest checkpoint
    (``record.json`` for checkpoints written before they carried the config)."""
    from .checkpoint import PARTIAL_NAME, CheckpointManager, read_checkpoint_meta
    from .runs import read_record

    latest = CheckpointManager(run_dir).latest_path()
    if latest is None and (run_dir / PARTIAL_NAME).exists():  # only a within-epoch checkpoint of epoch 1
        latest = run_dir / PARTIAL_NAME
    meta = read_checkpoint_meta(latest) if latest is not None else {}
    config = meta.get("config")
    if config is None:
        config = (read_record(run_dir) or {}).get("config")
    if not isinstance(config, dict):
        return None, None, None
    epochs = int(config.get("trainer", {}).get("epochs", 0)) or None
    return config, meta.get("schedule_epochs", epochs), meta.get("target_epochs", epochs)


def _checkpointed_epochs(run_dir: Path) -> int:
    """The epoch of the checkpoint ``latest`` names in ``run_dir`` (0 when there is none)."""
    from .checkpoint import CheckpointManager

    try:
        latest = CheckpointManager(run_dir).latest_path()
    except Exception:  # noqa: BLE001 - a corrupt pointer: report no checkpoint
        return 0
    m = CheckpointManager.PATTERN.match(latest.name) if latest is not None and latest.exists() else None
    return int(m.group(1)) if m else 0


def _within_epoch(run_dir: Path) -> tuple[int, int] | None:
    """``(epoch (1-based), chunks done)`` of the run's within-epoch checkpoint, None when there is none."""
    from .checkpoint import PARTIAL_NAME, read_checkpoint_meta

    try:
        meta = read_checkpoint_meta(Path(run_dir) / PARTIAL_NAME)
        return int(meta["epoch"]) + 1, int(meta["chunk"])
    except Exception:  # noqa: BLE001 - none, or unreadable: report none (resume names a corrupt one)
        return None


def _mark(run_dir: Path, status: str, meta: dict, group: "_Group | None" = None, **fields: Any) -> None:
    """Mark the run's record (``pcjax.runs.mark_record``; a replica group's: the records of its replicas
    still running) without masking the error being raised."""
    import warnings

    from .runs import mark_record

    try:
        if group is None:
            mark_record(run_dir, status, meta, **fields)
        else:
            group.mark(status, **fields)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk; the original error matters more
        warnings.warn(f"could not mark {run_dir / 'record.json'} {status}: {exc}", stacklevel=3)


def _refused_resume(err: BaseException, resume_dir: Path | None) -> bool:
    """Whether ``err`` refuses a resume: its checkpoint is missing, corrupt or does not fit (a
    ``CheckpointError``, raised while ``fit`` restores it, before it writes anything). A refusal
    leaves the run's record as it was, as a refusal for a changed configuration does."""
    from .checkpoint import CheckpointError

    return resume_dir is not None and isinstance(err, CheckpointError)


class _Group:
    """The replica group of a config with ``trainer.replicas`` > 1 (see :mod:`pcjax.replicas`): its
    replicas' directories, configs and record fields, locks, trackers and training."""

    def __init__(self, c: dict, run_dir: Path, meta: dict) -> None:
        from .replicas import replica_config, replica_dirs

        self.c, self.run_dir, self.meta = c, run_dir, meta
        self.size = int(c["trainer"]["replicas"])
        self.dirs = replica_dirs(run_dir, int(c["seed"]), self.size)
        self.configs = [replica_config(c, k) for k in range(self.size)]
        self.tracker_list: list | None = None

    def lock(self) -> Any:
        """The lock of the group's directory and of every replica's (``acquire()`` takes them)."""
        from .replicas import GroupLock

        return GroupLock([self.run_dir, *self.dirs])

    def trackers(self, make: Callable[[dict], Any]) -> Any:
        """One tracker per replica (``make(replica config)``), started and finished together."""
        from .replicas import ReplicaTrackers

        self.tracker_list = [make(ck) for ck in self.configs]
        return ReplicaTrackers(self.tracker_list, self.configs, self.dirs)

    def train(self, model, algo, data, tc: TrainerConfig, tracker) -> dict:
        """Train the group; the dict ``run_experiment`` returns (``pcjax.replicas.group_result``)."""
        from .replicas import group_result, train_group

        records = train_group(self.c, model, algo, data, tc, self.meta, self.run_dir, self.tracker_list)
        return group_result(records, self.run_dir)

    def mark(self, status: str, **fields: Any) -> None:
        """Mark the records of the replicas still running (``pcjax.replicas.mark_replicas``)."""
        from .replicas import mark_replicas

        mark_replicas(self.dirs, [{**self.meta, "config": ck} for ck in self.configs], status, **fields)


class _NoLock:
    """The run-directory lock of a process that does not write (process > 0 of a multi-process run)."""

    def release(self) -> None:
        """Nothing to release."""


def tracker_options(c: dict, name: str, *, overrides: list[str] | None = None,
                    sweep_dir: str | Path | None = None) -> dict:
    """wandb options with readable defaults: name ``<name> <overrides> seed<seed>``, group ``<name>``
    (``<name>/<sweep folder>`` in a sweep) and tags dataset, model, algorithm (+ ``tracking.wandb.tags``)."""
    w = dict(c["tracking"]["wandb"])
    shown = [o for o in (overrides or []) if not o.startswith(("experiment=", "hydra.", "seed=", "+sweep="))]
    w["name"] = w.get("name") or " ".join([name, *shown, f"seed{c['seed']}"])[:128]
    w["group"] = w.get("group") or (f"{name}/{Path(sweep_dir).name}" if sweep_dir else name)[:128]
    tags = [c["dataset"]["name"], c["model"]["name"], algorithm_label(c), *(w.get("tags") or [])]
    w["tags"] = list(dict.fromkeys(str(t)[:64] for t in tags))
    return w


def _run_meta(c: dict) -> dict:
    """The record's identifying fields: name (``name`` or dataset_model_label), dataset, model,
    algorithm label, the configuration and the published reference (when it has a value)."""
    d, label = c["dataset"], algorithm_label(c)
    ref = c.get("reference") or {}
    return {"name": c.get("name") or f"{d['name']}_{c['model']['name']}_{label}", "dataset": d["name"],
            "model": c["model"]["name"], "algorithm": label, "config": c,
            "reference": ref if ref.get("value") is not None else None}


def _run_dirs(c: dict, name: str, run_dir, replicas: int, writer: bool) -> tuple[Path, Path | None]:
    """(the run directory, the directory resumed from or None), the same on every process of a
    multi-process run (process 0's); a resumed run continues in the directory it resumes."""
    from .distributed import same_on_every_process
    from .runs import default_run_dir

    run_dir = Path(same_on_every_process(str(run_dir or c.get("run_dir")
                                             or default_run_dir(name, c["seed"], replicas=replicas))))
    resume_dir = _resume_dir(run_dir, c["trainer"]["resume"]) if writer else None
    resume_dir = same_on_every_process(str(resume_dir or "")) or None
    if resume_dir:
        return Path(resume_dir), Path(resume_dir)
    return run_dir, None


def _check_resume(run_dir: Path, c: dict) -> tuple[dict | None, int]:
    """A resume's checks: the saved configuration's maths must match ``c`` (``ConfigError`` listing the
    changed keys; a run that saved none is resumed with a warning). Returns (the saved configuration or
    None, the epochs its learning-rate schedule spans)."""
    import warnings

    from .runs import check_resume_config

    t = c["trainer"]
    saved, saved_schedule, saved_target = _saved_run(run_dir)
    if saved is None:
        warnings.warn(f"{run_dir}: neither its checkpoint nor its record holds the run's config; "
                      "resuming without checking that the configuration is unchanged", stacklevel=3)
        return None, t["epochs"]
    check_resume_config(run_dir, saved, c, defaults=to_dict(Config()), saved_epochs=saved_target,
                        extend=bool(t.get("extend_epochs")))
    return saved, saved_schedule


def trainer_config(c: dict, algo, run_dir: Path, *, resume: bool) -> TrainerConfig:
    """The ``TrainerConfig`` of a plain config dict for ``algo`` (its loop) writing to ``run_dir``."""
    d, t = c["dataset"], c["trainer"]
    aug = d["augment"]
    return TrainerConfig(
        epochs=t["epochs"], batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
        val_fraction=t["val_fraction"], seed=c["seed"], chunks_per_epoch=t["chunks_per_epoch"],
        loop=algo.runtime.loop,
        augment=AugmentSpec(aug["crop_padding"], aug["flip"], aug["crop_size"]), progress=t["progress"],
        run_dir=str(run_dir), resume=resume, checkpoint=t["checkpoint"],
        checkpoint_minutes=t.get("checkpoint_minutes", 10.0),
        beta_schedule=beta_schedule(c["algorithm"], c["seed"]) if c["algorithm"]["name"] != "bp" else None,
        divergence_threshold=t.get("divergence_threshold", 1e12), diagnostics=bool(t.get("diagnostics", False)),
        devices=t.get("devices", 1), placement=t.get("placement", "auto"),
        device_memory_budget=t.get("device_memory_budget"),
    )


def _tracker(c: dict, name: str, group, writer: bool, *, overrides, sweep_dir):
    """The run's tracker (one per replica for a group; none on a process that does not write)."""
    from .tracking import make_tracker

    backends = list(c["tracking"]["backends"]) if writer else ["none"]
    if group is None:
        return make_tracker(backends, **tracker_options(c, name, overrides=overrides, sweep_dir=sweep_dir))
    return group.trackers(lambda ck: make_tracker(
        backends, **tracker_options(ck, name, overrides=overrides, sweep_dir=sweep_dir)))


def _prepare(c: dict, overrides: list[str] | None) -> tuple[int, bool]:
    """Plugins loaded, the configuration checked (schema, ranges, replicas), the compilation cache and
    ``jax.distributed`` set up: (replicas, whether this process writes the run's files)."""
    from .compile_cache import enable_compile_cache
    from .config import check_schema, validate_config
    from .distributed import initialize, is_writer
    from .replicas import check_replicas

    load_plugins(c.get("plugins"))
    check_schema(c)
    validate_config(c, overrides)
    t = c["trainer"]
    replicas = check_replicas(c)  # > 1: a replica group (pcjax.replicas); unsupported combinations refused here
    enable_compile_cache(t.get("compile_cache", "auto"))
    initialize(t.get("distributed", "off"), coordinator=t.get("coordinator"), num_processes=t.get("num_processes"),
               process_id=t.get("process_id"))
    return replicas, is_writer()


def _take_over(run_dir: Path, group, *, fresh: bool, on_started) -> None:
    """The locked run directory made this run's: an earlier run's files archived (a fresh run), then
    ``on_started`` (the command line writes Hydra's ``.hydra/`` files)."""
    from .runs import archive_previous_run

    if fresh:
        for folder in [run_dir] if group is None else [run_dir, *group.dirs]:
            archive_previous_run(folder)
    if on_started is not None:
        on_started()


def _data_and_parts(c: dict, schedule_epochs: int):
    """The dataset, model and algorithm of ``c``; the learning-rate schedule spans ``schedule_epochs``
    (the run's original epochs, also when a resumed run is extended)."""
    d, t = c["dataset"], c["trainer"]
    options = {"label_mode": d["label_mode"]} if d["name"] == "cifar100" else {}
    data = load_dataset(d["name"], d["root"], download=d["download"], limit_train=d["limit_train"],
                        limit_test=d["limit_test"], **options)
    n_train = int(data.train_x.shape[0] * (1 - t["val_fraction"]))
    steps = max(n_train // t["batch_size"], 1)
    model, algo = build({**c, "trainer": {**t, "epochs": schedule_epochs}}, steps, data.image_shape, data.num_classes)
    return data, model, algo


def _interrupted(run_dir: Path, meta: dict, group, started: bool, err: KeyboardInterrupt) -> None:
    """Ctrl-C: the record marked ``interrupted`` with what is checkpointed; raises ``RunInterrupted``."""
    from .errors import RunInterrupted

    done, within = _checkpointed_epochs(run_dir), _within_epoch(run_dir)
    log.warning("interrupted (checkpointed epochs: %d%s)", done,
                "" if within is None else f", within-epoch checkpoint: {within[1]} chunks of epoch {within[0]}")
    if started:
        extra = {} if within is None else {"within_epoch": {"epoch": within[0], "chunks": within[1]}}
        _mark(run_dir, "interrupted", meta, group, interrupted={"checkpointed_epochs": done, **extra})
    raise RunInterrupted(str(run_dir), done, within) from err


def run_experiment(cfg: Any, run_dir: str | Path | None = None, *, overrides: list[str] | None = None,
                   sweep_dir: str | Path | None = None, on_started: Callable[[], None] | None = None) -> dict:
    """Run one training job described by ``cfg``; returns its record (also written to run_dir).

    The configuration is checked first (unknown keys, ranges and choices: ``ConfigError``); the run
    then locks its directory (``RunLockedError`` when another live run holds it). Without
    ``run_dir`` the run goes to ``outputs/<name>/seed<seed>/<start time>-<pid>``. Resuming checks
    that the configuration's maths match the run's (``ConfigError`` listing the changed keys).
    A failure after the run has started marks its record ``failed`` (``diverged`` on divergence) with
    an ``error`` field; Ctrl-C marks it ``interrupted`` and raises :class:`~pcjax.errors.RunInterrupted`
    (a ``KeyboardInterrupt``) carrying the run directory. ``overrides`` (the command line's: a model
    option set there must be one the builder takes) and ``sweep_dir`` (from the Hydra job) name and
    group the wandb run. ``on_started`` (the command line writes Hydra's ``.hydra/`` files with it) is
    called once the run holds its directory: locked, a resume's checks passed, an earlier run's files
    archived; a run refused before that point writes nothing. From then on the run's progress (start,
    compilation, every epoch's metrics, the end or the error) is logged to ``run_dir/train.log``
    (``pcjax.runs.RunLog``); a run directory that cannot be written is a ``ConfigError`` naming it.
    With ``trainer.replicas=K`` > 1 the seeds ``seed .. seed+K-1`` train as one vmapped group in
    ``run_dir`` (default ``outputs/<name>/seeds<first>-<last>/<start time>``), each replica's record in
    ``run_dir/seed<seed+k>/`` (see :mod:`pcjax.replicas`); the returned dict is then
    ``pcjax.replicas.group_result``'s (the replicas' records under ``replicas``, mean summary)."""
    from .runs import RunLock, RunLog, check_output_folder, config_fingerprint, describe_error

    c = to_dict(cfg if cfg is not None else Config())
    replicas, writer = _prepare(c, overrides)
    t = c["trainer"]
    meta = _run_meta(c)
    name = meta["name"]
    run_dir, resume_dir = _run_dirs(c, name, run_dir, replicas, writer)
    if writer:  # a read-only or full folder: a ConfigError naming it, before anything is written
        check_output_folder(run_dir, "hydra.run.dir" if overrides is not None else "run_dir")
    group = _Group(c, run_dir, meta) if replicas > 1 else None
    lock = (RunLock(run_dir) if group is None else group.lock()).acquire() if writer else _NoLock()
    schedule_epochs, saved = t["epochs"], None
    if resume_dir is not None:  # refusing leaves the run's files as they are
        try:
            saved, schedule_epochs = _check_resume(run_dir, c)
        except BaseException:
            lock.release()
            raise
    tracker, started = None, resume_dir is None and writer  # a resumed run's record changes once fit() runs
    run_log = None
    try:
        if writer:
            _take_over(run_dir, group, fresh=resume_dir is None, on_started=on_started)
            run_log = RunLog(run_dir).start()
            log.info("%s %s in %s%s", "resuming" if resume_dir is not None else "starting", name, run_dir,
                     f" (overrides: {' '.join(overrides)})" if overrides else "")
        meta["checkpoint_meta"] = {"config": saved or c,
                                   "config_fingerprint": config_fingerprint(saved or c),
                                   "schedule_epochs": schedule_epochs, "target_epochs": t["epochs"]}
        data, model, algo = _data_and_parts(c, schedule_epochs)
        tc = trainer_config(c, algo, run_dir, resume=resume_dir is not None)
        tracker = _tracker(c, name, group, writer, overrides=overrides, sweep_dir=sweep_dir)
        tracker.start(c, run_dir)
        started = writer
        if group is None:
            _, record = fit(algo, model, data, tc, tracker=tracker, meta=meta)
        else:
            record = group.train(model, algo, data, tc, tracker)
        log.info("complete: %s", summary_line({**record, "run_dir": str(run_dir)}))
    except KeyboardInterrupt as err:
        _interrupted(run_dir, meta, group, started, err)
    except Exception as err:
        log.error("%s: %s", type(err).__name__, err)
        if started and not _refused_resume(err, resume_dir):
            _mark(run_dir, "failed", meta, group, error=describe_error(err))
        raise
    finally:
        try:
            if tracker is not None:
                tracker.finish(None)
        finally:
            if run_log is not None:
                run_log.stop()
            lock.release()
    record["run_dir"] = str(run_dir)
    return record


def summary_line(record: dict) -> str:
    """The one-line JSON summary printed last by ``experiments/train.py``."""
    s = record["summary"]
    return json.dumps({
        "name": record["name"], "dataset": record["dataset"], "model": record["model"],
        "algorithm": record["algorithm"], "seed": record["seed"], "epochs": len(record["epochs"]),
        "test_acc": s.get("test_acc"), "val_acc": s.get("val_acc"), "best_test_acc": s.get("best_test_acc"),
        "seconds_per_epoch": s.get("seconds_per_epoch"), "compile_seconds": s.get("compile_seconds"),
        "time_to_first_step_seconds": s.get("time_to_first_step_seconds"),
        "device": record["hardware"].get("device_kind"), "devices": record["hardware"].get("devices", 1),
        "run_dir": record.get("run_dir"),
    })
