"""Run integrity: failing sweep jobs, resume with a changed configuration, run-directory locks and
unique default directories, the record of a resumed run that diverges, and Ctrl-C."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pcjax as pj
from pcjax.errors import RunInterrupted, RunLockedError
from pcjax.experiment import build as _build
from pcjax.experiment import run_experiment
from pcjax.runs import LOCK, RunLock, default_run_dir

from conftest import tiny_config as tiny

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "experiments" / "train.py")
FAST = ["trainer.epochs=1", "trainer.progress=false", "model.width=16", "model.depth=1", "algorithm=pc",
        "energy=gaussian", "lalr=constant", "algorithm.T=2", "dataset.limit_train=256", "dataset.limit_test=100"]



def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process that holds ``run``'s directory lock (for 120 s, or until killed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pcjax.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('locked', flush=True); time.sleep(120)", str(run)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "locked":
        holder.kill()
        raise AssertionError(f"the lock holder for {run} did not start")
    return holder


def _cli(args, cwd, timeout=300):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _record(run_dir) -> dict:
    return json.loads((Path(run_dir) / "record.json").read_text())


# ------------------------------------------------------------------ 1. a failing job in a sweep
def test_sweep_records_a_failing_job_runs_the_others_and_exits_nonzero(tmp_path):
    proc = _cli(["-m", *FAST, "optim.lr=1e-3,-1,2e-3"], tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    jobs = {p.name: _record(p) for p in sweep.iterdir() if (p / "record.json").exists()}
    assert sorted(jobs) == ["seed0_0", "seed0_1", "seed0_2"]  # job 2 ran after job 1 failed
    assert jobs["seed0_0"]["status"] == jobs["seed0_2"]["status"] == "complete"
    failed = jobs["seed0_1"]
    assert failed["status"] == "failed" and "optim.lr" in failed["error"] and "ConfigError" in failed["error"]
    assert "optim.lr=-1" in failed["overrides"] and failed["algorithm"] == "pc-se"
    assert "1 of 3 jobs did not complete" in proc.stderr and "seed0_1" in proc.stderr
    assert "optim.lr=-1" in proc.stderr
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2
    # the failed record does not break the tables
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), str(sweep), "--out",
                          str(tmp_path / "t.md")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 failed" in (tmp_path / "t.md").read_text()


# ------------------------------------------------------------ 2. resume with a changed config
def test_resume_with_a_changed_config_is_refused_with_a_diff(tmp_path, monkeypatch):
    first = run_experiment(tiny(), run_dir=tmp_path)
    before = (tmp_path / "record.json").read_text()
    assert first["algorithm"] == "pc-se"
    changed = tiny(epochs=2)
    changed.algorithm.name, changed.optim.lr, changed.energy.lam = "bp", 2e-3, 0.1
    changed.trainer.resume = str(tmp_path)
    with pytest.raises(pj.ConfigError) as err:
        run_experiment(changed, run_dir=tmp_path / "new")
    msg = str(err.value)
    for line in ('algorithm.name: "pc" -> "bp"', "optim.lr: 0.001 -> 0.002", "energy.lam: 0.0 -> 0.1",
                 "trainer.epochs: 1 -> 2", "trainer.extend_epochs=true"):
        assert line in msg, msg
    assert str(tmp_path) in msg
    assert (tmp_path / "record.json").read_text() == before  # refused: the run is untouched
    assert not (tmp_path / LOCK).exists()

    shorter = tiny()
    shorter.algorithm.T = 3
    shorter.trainer.resume = str(tmp_path)
    with pytest.raises(pj.ConfigError, match="algorithm.T: 2 -> 3"):
        run_experiment(shorter, run_dir=tmp_path)

    # keys that do not change the maths may differ
    same = tiny()
    same.trainer.resume, same.trainer.eval_batch_size, same.tracking.backends = str(tmp_path), 7, []
    assert run_experiment(same, run_dir=tmp_path)["status"] == "complete"

    # extending the epochs needs the explicit option; the schedule keeps the original length
    import pcjax.experiment as ex

    built = []
    monkeypatch.setattr(ex, "build", lambda c, *a: built.append(c["trainer"]["epochs"]) or _build(c, *a))
    longer = tiny(epochs=2)
    longer.trainer.resume, longer.trainer.extend_epochs = str(tmp_path), True
    record = run_experiment(longer, run_dir=tmp_path)
    assert built == [1] and len(record["epochs"]) == 2 and record["status"] == "complete"
    assert record["config"]["trainer"]["epochs"] == 2 and record["algorithm"] == "pc-se"
    from pcjax.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(tmp_path / "ckpt_00002.pcjax")
    assert (meta["schedule_epochs"], meta["target_epochs"]) == (1, 2)
    back = tiny(epochs=1)
    back.trainer.resume, back.trainer.extend_epochs = str(tmp_path), True
    with pytest.raises(pj.ConfigError, match="cannot be shortened"):
        run_experiment(back, run_dir=tmp_path)


# --------------------------------------------------------------- 3. locks and unique run dirs
def test_second_run_into_a_locked_directory_refuses_and_a_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
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


# --------------------------------------------------------------- 7. a resumed run that diverges
def test_resumed_divergence_keeps_summary_trace_and_config(tmp_path):
    run_experiment(tiny(), run_dir=tmp_path)
    before = _record(tmp_path)
    assert before["summary"]["test_acc"] is not None and before["inference_trace"]
    more = tiny(epochs=2)
    more.trainer.resume, more.trainer.extend_epochs = str(tmp_path), True
    more.trainer.divergence_threshold = 1e-6  # epoch 2 "blows up"
    with pytest.raises(pj.DivergenceError, match="epoch 2"):
        run_experiment(more, run_dir=tmp_path)
    after = _record(tmp_path)
    assert after["status"] == "diverged" and after["divergence"]["epoch"] == 2
    for key in ("summary", "inference_trace", "epochs", "hardware", "name", "algorithm"):
        assert after[key] == before[key], key
    strip = lambda c: {**c, "trainer": {k: v for k, v in c["trainer"].items()  # noqa: E731
                                        if k not in ("epochs", "extend_epochs")}}
    assert strip(after["config"]) == strip(before["config"])
    assert after["resumes"][0]["epoch"] == 1 and after["resumes"][0]["previous_status"] == "complete"


# ---------------------------------------------------------------------------------- Ctrl-C
class _Interrupt:
    """A tracker that presses Ctrl-C right after epoch 1 was saved."""

    def __init__(self, **_):
        pass

    def start(self, config, run_dir):
        pass

    def log(self, metrics, step):
        if step == 1:
            raise KeyboardInterrupt

    def finish(self, summary=None):
        pass


def test_ctrl_c_marks_the_record_interrupted_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from pcjax import tracking

    monkeypatch.setitem(tracking.BACKENDS, "interrupt", _Interrupt)
    c = tiny(epochs=2)
    c.tracking.backends = ["interrupt"]
    try:  # (a bare KeyboardInterrupt escaping here would stop the whole test session)
        run_experiment(c, run_dir=tmp_path)
    except KeyboardInterrupt as exc:
        err = exc
    else:
        pytest.fail("the interrupt did not stop the run")
    assert isinstance(err, RunInterrupted), type(err)
    assert err.run_dir == str(tmp_path) and err.epochs_done == 1
    record = _record(tmp_path)
    assert record["status"] == "interrupted" and len(record["epochs"]) == 1
    assert (tmp_path / "latest").read_text().strip() == "ckpt_00001.pcjax" and not (tmp_path / LOCK).exists()
    from pcjax.reporting import group_rows, load_records

    (row,) = group_rows(load_records([tmp_path]))
    assert row.used == [] and "1 interrupted (excluded)" in row.flags()  # unfinished: not in the tables
    c.tracking.backends, c.trainer.resume = ["jsonl"], True  # true: this directory, which has a checkpoint
    resumed = run_experiment(c, run_dir=tmp_path)
    assert resumed["status"] == "complete" and len(resumed["epochs"]) == 2
    assert resumed["resumes"][0]["previous_status"] == "interrupted"


def test_ctrl_c_within_an_epoch_keeps_the_chunks_done(tmp_path, within_epoch_saves):
    within_epoch_saves(lambda epoch, chunk: chunk == 2)
    c = tiny(epochs=1)
    c.trainer.chunks_per_epoch, c.trainer.checkpoint_minutes = 4, 0.0
    with pytest.raises(RunInterrupted) as err:
        run_experiment(c, run_dir=tmp_path)
    assert err.value.epochs_done == 0 and err.value.within_epoch == (1, 2)
    assert "2 chunks of epoch 1" in str(err.value)
    record = _record(tmp_path)
    assert record["status"] == "interrupted"
    assert record["interrupted"] == {"checkpointed_epochs": 0, "within_epoch": {"epoch": 1, "chunks": 2}}
    within_epoch_saves()
    c.trainer.resume = True
    resumed = run_experiment(c, run_dir=tmp_path)
    assert resumed["status"] == "complete" and resumed["resumes"][0]["chunk"] == 2


def test_cli_ctrl_c_exits_cleanly_and_prints_the_resume_command(tmp_path):
    plugin = tmp_path / "interrupt_plugin.py"
    plugin.write_text("from pcjax import tracking\n\n\nclass Interrupt:\n    def __init__(self, **_): pass\n"
                      "    def start(self, config, run_dir): pass\n"
                      "    def log(self, metrics, step): raise KeyboardInterrupt\n"
                      "    def finish(self, summary=None): pass\n\n\n"
                      "tracking.BACKENDS['interrupt'] = Interrupt\n")
    proc = _cli([*FAST, "trainer.epochs=2", f"plugins=[{plugin}]", "tracking.backends=[interrupt]"], tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (record_path,) = tmp_path.glob("outputs/*/seed0/*/record.json")
    assert json.loads(record_path.read_text())["status"] == "interrupted"
    assert "checkpoint of epoch 1 is kept" in proc.stderr
    assert f"trainer.resume={record_path.parent}" in proc.stderr
    assert "python experiments/train.py trainer.epochs=1" in proc.stderr and "algorithm=pc" in proc.stderr


# ------------------------------------------------- refusals leave the run's files as they were
def test_resume_refused_for_a_corrupt_checkpoint_leaves_the_record_alone(tmp_path):
    """A resume refused because the checkpoint is corrupt marked a complete run `failed` (the table
    then flagged it); a refusal leaves the record as it was, as a refusal for a changed config does."""
    from pcjax.checkpoint import CheckpointError

    run_experiment(tiny(), run_dir=tmp_path)
    before = (tmp_path / "record.json").read_bytes()
    latest = tmp_path / (tmp_path / "latest").read_text().strip()
    latest.write_bytes(latest.read_bytes()[:-10])
    again = tiny()
    again.trainer.resume = str(tmp_path)
    with pytest.raises(CheckpointError) as err:
        run_experiment(again, run_dir=tmp_path / "new")
    assert latest.name in str(err.value) and "corrupt" in str(err.value)  # the cause
    assert "trainer.resume=false" in str(err.value)  # and the fix (no older checkpoint to fall back on)
    assert (tmp_path / "record.json").read_bytes() == before and _record(tmp_path)["status"] == "complete"
    assert not (tmp_path / LOCK).exists()


def test_cli_run_refused_by_the_lock_leaves_the_winners_hydra_files_alone(tmp_path):
    """A run refused by the directory lock had already rewritten the winner's .hydra/ files (Hydra
    writes them before the job starts); the command line now writes them once it holds the lock."""
    run = tmp_path / "run"
    winner = run / ".hydra"
    winner.mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (winner / name).write_text(f"# the winner's {name}\n")
    holder = _hold_lock(run)
    try:
        proc = _cli([*FAST, f"hydra.run.dir={run}"], tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "is in use by another run" in proc.stderr and f"pid {holder.pid}" in proc.stderr
    assert "Wait for that run to end, or give this run its own directory" in proc.stderr
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        assert (winner / name).read_text() == f"# the winner's {name}\n", name
    # with the directory free, the run writes its own .hydra files (the earlier ones are archived)
    proc = _cli([*FAST, f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "algorithm.T=2" in (winner / "overrides.yaml").read_text()
    assert "T: 2" in (winner / "config.yaml").read_text() and "run:" in (winner / "hydra.yaml").read_text()
    (archive,) = run.glob("previous-*")
    assert (archive / ".hydra" / "config.yaml").read_text() == "# the winner's config.yaml\n"


# ------------------------------------------------------------------ timing across a resume
def test_seconds_per_epoch_leaves_out_the_first_epoch_after_a_resume(tmp_path, monkeypatch):
    """seconds_per_epoch left out a fresh run's first epoch but counted the first epoch after a resume
    (a new process: data placement, first dispatches), inflating it (0.038 s became 0.834 s)."""
    from pcjax import tracking
    from pcjax.training import _summarise

    def record(secs, resumes):
        r = {"epochs": [{"seconds": s, "val_acc": 0.5, "test_acc": 0.5} for s in secs], "summary": {},
             "resumes": [{"epoch": e} for e in resumes]}
        _summarise(r)
        return r["summary"]["seconds_per_epoch"]

    assert record([2.0, 0.1, 0.1], []) == pytest.approx(0.1)
    assert record([2.0, 0.1, 3.0, 0.1], [2]) == pytest.approx(0.1)  # epoch 3 began a resumed process
    assert record([2.0, 3.0], [1]) == pytest.approx(2.0)  # only first epochs: the fresh run's, as a 1-epoch run
    assert record([4.0], []) == pytest.approx(4.0)

    monkeypatch.setitem(tracking.BACKENDS, "interrupt", _Interrupt)
    c = tiny(epochs=3)
    c.tracking.backends = ["interrupt"]
    with pytest.raises(RunInterrupted):
        run_experiment(c, run_dir=tmp_path)
    c.tracking.backends, c.trainer.resume = ["jsonl"], True
    resumed = run_experiment(c, run_dir=tmp_path)
    assert [r["epoch"] for r in resumed["resumes"]] == [1] and len(resumed["epochs"]) == 3
    assert resumed["summary"]["seconds_per_epoch"] == pytest.approx(resumed["epochs"][2]["seconds"])


def test_read_lock_holder_reads_only_a_json_object(tmp_path):
    from pcjax.runs import read_lock_holder

    lock = tmp_path / ".lock"
    assert read_lock_holder(lock) == {}  # missing
    lock.write_text("")
    assert read_lock_holder(lock, attempts=3) == {}  # empty: retried, then given up
    lock.write_text("[1, 2]")
    assert read_lock_holder(lock) == {}  # JSON, but not a holder
    lock.write_text('{"pid": 12, "host": "h"}\n')
    assert read_lock_holder(lock) == {"pid": 12, "host": "h"}
