"""The training command (Hydra app): ``pcjax train [overrides...]`` / ``python experiments/train.py``.

The configs ship inside the package (``pcjax.conf``, the repository's ``conf/``), so a wheel install
trains from any folder. Exit status: 0 on success; 2 for an error (``error: ...`` on stderr); 130
after Ctrl-C (the record is marked ``interrupted`` and the command that resumes the run is printed).
In a sweep (``-m``) a failing job is recorded as failed (``record.json`` with ``status`` and
``error`` in its directory) and the other jobs still run; the sweep ends with a list of the failed
jobs and exit status 1. Plugins named by a ``plugins=[...]`` override (or ``plugins=a.py``) are
imported before the configuration is composed, so a plugin's algorithms are config-group choices;
then the overrides are checked against the schema (``pcjax.config.check_overrides``: a typo gets the
closest key, not Hydra's advice to add it with ``+``), and the run folder is checked writable
(``OutputFolderCheck``) before Hydra creates it.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import check_overrides, register_configs
from .errors import PCJaxError, RunInterrupted
from .plugins import bracket_plugins, load_plugins, plugins_from_overrides
from .runs import check_output_folder, is_write_error, write_error_message

CONFIG_PATH = "pkg://pcjax.conf"
HYDRA_SUBDIR = ".hydra"  # where save_hydra_files writes (Hydra's own default output_subdir)
PROG = ["python experiments/train.py"]


def _resume_command(overrides: list[str], run_dir: str) -> str:
    keep = [o for o in overrides if not o.lstrip("+~").startswith("trainer.resume=")]
    return " ".join([PROG[0], *map(shlex.quote, keep), shlex.quote(f"trainer.resume={run_dir}")])


def _interrupted(err: KeyboardInterrupt, overrides: list[str]) -> None:
    if isinstance(err, RunInterrupted):
        within = getattr(err, "within_epoch", None)
        if err.epochs_done or within:
            kept = [f"the checkpoint of epoch {err.epochs_done}"] if err.epochs_done else []
            kept += [f"a within-epoch checkpoint ({within[1]} chunks of epoch {within[0]})"] if within else []
            print(f"interrupted: training stopped; {err.run_dir}/record.json is marked 'interrupted' and "
                  f"{' and '.join(kept)} {'are' if len(kept) > 1 else 'is'} kept. Resume with:\n"
                  f"  {_resume_command(overrides, err.run_dir)}", file=sys.stderr, flush=True)
        else:
            print(f"interrupted: training stopped before the first epoch ended ({err.run_dir}/record.json is "
                  "marked 'interrupted'; no checkpoint was written): run the command again to start over.",
                  file=sys.stderr, flush=True)
    else:
        print("interrupted before training started.", file=sys.stderr, flush=True)
    sys.exit(130)


def _record_job_failure(job_dir: str, cfg: DictConfig, err: BaseException, overrides: list[str]) -> None:
    """The failure record of a sweep job, unless the run already marked its record in ``job_dir``."""
    from pcjax.runs import BAD_STATUSES, describe_error, job_meta, mark_record, read_record

    record = read_record(job_dir)
    if record is not None and record.get("status") in BAD_STATUSES and record.get("status") != "running":
        if "overrides" not in record:
            mark_record(job_dir, record["status"], overrides=overrides)
        return
    mark_record(job_dir, "failed", job_meta(cfg), error=describe_error(err), overrides=overrides)


class OutputFolderCheck(Callback):
    """Before Hydra creates the run (or sweep) folder: check that it can be written, so that a
    read-only or full folder is one ``error:`` paragraph naming the folder and the fix (exit status 2)
    instead of a traceback from Hydra's ``mkdir``."""

    def _check(self, folder: Any, setting: str) -> None:
        try:
            check_output_folder(str(folder), setting)
        except PCJaxError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        """Check ``hydra.run.dir``."""
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Check ``hydra.sweep.dir``."""
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")


def save_hydra_files(cfg: DictConfig, job_dir: str, subdir: str = HYDRA_SUBDIR) -> None:
    """Write Hydra's record of the job (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``) into
    ``job_dir/subdir``, as Hydra does before a job when ``hydra.output_subdir`` is set. conf/config.yaml
    sets it to null, so that these files are written only once the run holds its directory's lock:
    a run refused by the lock of another run in the same directory leaves that run's files alone."""
    from pathlib import Path

    from omegaconf import OmegaConf

    out = Path(job_dir) / subdir
    out.mkdir(parents=True, exist_ok=True)
    hydra_cfg = HydraConfig.instance().cfg
    files = {"config.yaml": cfg, "hydra.yaml": hydra_cfg, "overrides.yaml": hydra_cfg.hydra.overrides.task}
    for name, node in files.items():
        (out / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


def _job(cfg: DictConfig) -> float | None:
    """One Hydra job: run the experiment; in a sweep, record a failure and go on."""
    import logging

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    from pcjax.experiment import run_experiment, summary_line

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    job_dir = hc.runtime.output_dir
    save = None if hc.output_subdir is not None else (lambda: save_hydra_files(cfg, job_dir))
    try:
        record = run_experiment(cfg, run_dir=job_dir, overrides=overrides,
                                sweep_dir=hc.sweep.dir if multirun else None, on_started=save)
    except KeyboardInterrupt as err:  # Ctrl-C stops the run (and a sweep) without a traceback
        _interrupted(err, overrides)
    except Exception as err:  # noqa: BLE001 - in a sweep every failure is recorded and the sweep goes on
        if is_write_error(err, job_dir):  # a read-only or full folder: the file, the cause and the fix
            from pcjax.experiment import _checkpointed_epochs, _within_epoch

            resume = (_resume_command(overrides, job_dir) if _checkpointed_epochs(Path(job_dir))
                      or _within_epoch(Path(job_dir)) else None)
            print(f"error: {write_error_message(err, job_dir, resume=resume)}", file=sys.stderr, flush=True)
            if not multirun:
                sys.exit(2)
            try:
                _record_job_failure(job_dir, cfg, err, overrides)
            except OSError:  # the same full or read-only folder: the message above says it all
                pass
            return None
        if not multirun:
            if isinstance(err, PCJaxError):
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            raise
        if isinstance(err, PCJaxError):
            print(f"error: job {hc.job.num} ({' '.join(overrides)}): {err}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        _record_job_failure(job_dir, cfg, err, overrides)
        return None
    print(summary_line(record), flush=True)
    # Sweepers (e.g. Optuna) maximise this: the validation accuracy, never the test accuracy.
    return record["summary"].get("val_acc")



def train_main(argv: list[str] | None = None, prog: str = "python experiments/train.py") -> None:
    """Run the training command with ``argv`` (default: ``sys.argv[1:]``) as Hydra overrides."""
    argv = sys.argv[1:] if argv is None else list(argv)
    PROG[0] = prog
    os.environ.setdefault("WANDB_MODE", "offline")
    register_configs()
    argv = bracket_plugins(argv)  # plugins=a.py is the one-entry list plugins=[a.py]
    try:  # before composition: a plugin's algorithms are config-group choices (algorithm=my_rule)
        load_plugins(plugins_from_overrides(argv))
        check_overrides([a for a in argv if "=" in a and not a.startswith("-")])  # typos named before Hydra's advice
    except PCJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [prog.split()[-1]] + argv
    hydra.main(version_base=None, config_path=CONFIG_PATH, config_name="config")(_job)()
