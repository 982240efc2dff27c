"""The ``pcjax`` command: ``pcjax train [overrides...]``, ``pcjax table RUNS...``, ``pcjax sync RUNS...``,
``pcjax eval RUN_DIR``, ``pcjax status FOLDER...``, ``pcjax bench ...``; and the Python entry points ``load_config`` and ``train``.

    pcjax train algorithm=epc trainer.epochs=5          # Hydra overrides, configs shipped in the package
    pcjax train -m experiment=mnist_mlp_pc_se seed=0,1,2
    pcjax table multirun/                               # tables and plots beside the runs
    pcjax eval RUN_DIR [--split test|val|train]         # a trained run's accuracy, from its latest checkpoint
    pcjax status [FOLDER...]                            # every run under a folder: epochs done, time left
    pcjax sync multirun/                                # upload the offline wandb runs under a folder
    pcjax bench --workload mlp                          # benchmarks.speed (from a repository checkout)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USAGE = __doc__.split("\n\n")[1]


def load_config(experiment: str | None = None, overrides: list[str] | None = None):
    """The composed configuration (an OmegaConf ``DictConfig``) of ``experiment`` (a name in
    ``conf/experiment/``, or None for the default run) with Hydra ``overrides`` applied."""
    from hydra import compose, initialize_config_module

    from .config import check_overrides, register_configs
    from .plugins import bracket_plugins, load_plugins, plugins_from_overrides

    register_configs()
    overrides = bracket_plugins(overrides or [])
    load_plugins(plugins_from_overrides(overrides))
    if experiment:
        overrides = [f"experiment={experiment}", *overrides]
    check_overrides(overrides)
    with initialize_config_module(config_module="pcjax.conf", version_base=None):
        return compose("config", overrides=overrides)


def train(cfg=None, run_dir: str | None = None) -> dict:
    """Train the configuration ``cfg`` (``load_config(...)``, a plain dict, or None for the default
    run); returns the run record."""
    from .experiment import run_experiment

    return run_experiment(cfg if cfg is not None else load_config(), run_dir=run_dir)


def offline_runs(paths: list[str]) -> list[Path]:
    """The offline wandb run directories (``offline-run-*``) under ``paths``."""
    found = []
    for p in paths:
        found += sorted(q for q in Path(p).rglob("offline-run-*") if q.is_dir())
    return found


def eval_main(argv: list[str]) -> int:
    """``pcjax eval RUN_DIR [--split S]``: load the run at its latest checkpoint (``pcjax.load_run``),
    recompute its accuracy on the split and print it beside what training recorded for that epoch."""
    import argparse

    p = argparse.ArgumentParser(prog="pcjax eval", description=eval_main.__doc__.split(":", 1)[1].strip())
    p.add_argument("run_dir", help="a run directory holding record.json and its checkpoints")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    a = p.parse_args(argv)
    from .trained import RunLoadError, load_run

    try:
        run = load_run(a.run_dir)
    except RunLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    acc = run.evaluate(a.split)
    key = {"test": "test_acc", "val": "val_acc"}.get(a.split)  # training's own train_acc is a running mean
    rec = run.recorded(key) if key else None
    note = "" if rec is None else f" (recorded for this epoch: {100 * rec:.2f} %)"
    print(f"{a.run_dir}: {run.config.get('name') or 'run'} after epoch {run.epoch}, {a.split} accuracy "
          f"{100 * acc:.2f} %{note}")
    return 0


def run_dirs(paths: list[str]) -> list[Path]:
    """The run directories at or under ``paths``: folders holding a ``record.json``, a run lock or a
    checkpoint pointer (``latest``), sorted; wandb's own folders and archived earlier runs left out."""
    import os

    markers = {"record.json", ".lock", "latest"}
    found = set()
    for p in paths:
        for folder, subdirs, files in os.walk(p):  # one walk, not entering wandb's or archived runs' folders
            subdirs[:] = [s for s in subdirs if s != "wandb" and not s.startswith("previous-")]
            if markers.intersection(files):
                found.add(Path(folder))
    return sorted(found)


def status_main(argv: list[str]) -> int:
    """``pcjax status [FOLDER...]``: one line per run directory under the folders (default: ``.``):
    status, epochs done, last validation accuracy, s/epoch, time left, the pid of a live run, and what
    a restart resumes from (``pcjax.progress``)."""
    from .progress import progress_details, run_progress

    paths = argv or ["."]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    dirs = run_dirs(paths)
    if not dirs:
        print(f"error: no run directories (record.json, .lock or latest) under {' '.join(paths)}", file=sys.stderr)
        return 2
    try:
        for d in dirs:
            p = run_progress(d)
            print(f"{p.status:>11}  {d}  {progress_details(p)}".rstrip(), flush=True)
    except BrokenPipeError:  # `pcjax status | head`: the reader has gone; stop quietly, as ls does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pcjax`` console command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        from .app import train_main

        train_main(rest, prog="pcjax train")
        return 0
    if cmd == "table":
        from .tables import main as table_main

        return table_main(rest, prog="pcjax table")
    if cmd == "eval":
        return eval_main(rest)
    if cmd == "status":
        return status_main(rest)
    if cmd == "sync":
        runs = offline_runs(rest or ["."])
        if not runs:
            print(f"error: no offline wandb runs (offline-run-*) under {' '.join(rest or ['.'])}", file=sys.stderr)
            return 2
        return subprocess.call(["wandb", "sync", *map(str, runs)])
    if cmd == "bench":
        try:
            import benchmarks.speed  # noqa: F401
        except ImportError:
            print("error: pcjax bench runs benchmarks/ from a repository checkout (cd into it)", file=sys.stderr)
            return 2
        return subprocess.call([sys.executable, "-m", "benchmarks.speed", *rest])
    print(f"error: unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
