"""Run integrity: run-directory locks and unique default directories."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcjax.config import Config
from pcjax.errors import RunLockedError
from pcjax.experiment import run_experiment
from pcjax.runs import LOCK, RunLock, default_run_dir

ROOT = Path(__file__).resolve().parents[1]


def tiny(epochs: int = 1) -> Config:
    c = Config()
    c.dataset.limit_train, c.dataset.limit_test = 256, 100
    c.model.width, c.model.depth = 16, 1
    c.algorithm.T = 2
    c.trainer.epochs, c.trainer.batch_size, c.trainer.progress = epochs, 64, False
    c.tracking.backends = ["jsonl"]
    return c


def _record(run_dir) -> dict:
    return json.loads((Path(run_dir) / "record.json").read_text())


# --------------------------------------------------------------- 3. locks and unique run dirs
def test_second_run_into_a_locked_directory_refuses_and_a_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pcjax.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('locked', flush=True); time.sleep(120)", str(run)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as err:
            run_experiment(tiny(), run_dir=run)
        msg = str(err.value)
        assert str(run) in msg and f"pid {holder.pid}" in msg
        assert not (run / "record.json").exists() and not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((run / LOCK).read_text())["pid"] == holder.pid  # left behind by the killed holder
    (run / "record.json").write_text('{"schema": 1, "status": "complete", "name": "earlier"}')
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.warns(UserWarning, match=f"stale lock of pid {holder.pid}"), \
            pytest.warns(UserWarning, match="files of an earlier run"):
        record = run_experiment(tiny(), run_dir=run)
    assert record["status"] == "complete" and not (run / LOCK).exists()
    # a fresh run in a used directory first moves the earlier run's files aside: nothing is lost or mixed
    (archive,) = run.glob("previous-*")
    assert json.loads((archive / "record.json").read_text())["name"] == "earlier"
    assert (archive / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1 and _record(run)["name"] != "earlier"


def test_lock_in_the_same_process_and_fallback_pid_file(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK).exists()
    lock = RunLock(tmp_path)._acquire_pidfile()  # where flock is unavailable
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path)._acquire_pidfile()
    lock.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with pytest.warns(UserWarning, match="stale lock"):
        RunLock(tmp_path)._acquire_pidfile().release()


def test_default_run_directories_are_unique_and_resume_finds_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = default_run_dir("n", 0)
    b = default_run_dir("n", 0)
    assert a != b and a.parent == b.parent == Path("outputs/n/seed0") and str(os.getpid()) in a.name
    first, second = run_experiment(tiny()), run_experiment(tiny())
    assert first["run_dir"] != second["run_dir"]  # same config, started within the same second
    assert Path(first["run_dir"]).parent == Path(second["run_dir"]).parent
    for r in (first, second):
        assert _record(r["run_dir"])["status"] == "complete"
    again = tiny()
    again.trainer.resume = True
    assert run_experiment(again)["run_dir"] == second["run_dir"]


def test_hydra_run_and_sweep_dirs_hold_microseconds_and_the_pid():
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    from pcjax.config import register_configs

    register_configs()
    setup_globals()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", return_hydra_config=True)
        run_dir = OmegaConf.select(cfg, "hydra.run.dir")
        sweep_dir = OmegaConf.select(cfg, "hydra.sweep.dir")
    for d in (run_dir, sweep_dir):
        stamp = Path(d).name.split("-")
        assert len(stamp) == 4 and len(stamp[2]) == 6 and stamp[3] == str(os.getpid()), d
