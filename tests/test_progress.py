"""Where a run directory stands (``pcjax.progress``, ``pcjax status``, ``depth_study.py --list``): status
from the record and the lock, epochs done, the time left as (epochs to go) x (mean s/epoch) less the time
since the record was written, and what a restart resumes from."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pcjax import cli
from pcjax.progress import describe_progress, lock_holder, run_progress


def _record(d: Path, status: str, seconds: list[float], epochs: int = 5, mtime: float | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rec = {"status": status, "config": {"trainer": {"epochs": epochs}},
           "epochs": [{"epoch": i + 1, "seconds": s, "val_acc": 0.5 + 0.1 * i} for i, s in enumerate(seconds)]}
    (d / "record.json").write_text(json.dumps(rec))
    if mtime is not None:
        os.utime(d / "record.json", (mtime, mtime))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _lock(d: Path, pid: int, host: str | None = None) -> None:
    (d / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "then"}) + "\n")


def test_not_run(tmp_path):
    assert run_progress(tmp_path / "none").status == "not run"
    assert describe_progress(tmp_path / "none").strip() == "not run"


def test_a_run_killed_before_its_first_record_is_stopped_not_unrun(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "train.log").write_text("starting\n")
    assert run_progress(d).status == "stopped"
    assert describe_progress(d).strip() == "stopped  no checkpoint: starts again"


def test_live_run_time_left_is_epochs_to_go_times_mean_epoch_less_time_since_the_record(tmp_path, live_pid):
    d = tmp_path / "run"
    _record(d, "running", [100.0, 200.0], epochs=5, mtime=1_000_000.0)
    _lock(d, live_pid)
    p = run_progress(d, now=1_000_000.0 + 50.0)
    assert (p.status, p.epochs_done, p.epochs, p.seconds_per_epoch) == ("running", 2, 5, 150.0)
    assert p.seconds_left == pytest.approx(3 * 150.0 - 50.0)
    assert p.holder["pid"] == live_pid
    line = describe_progress(d, now=1_000_000.0 + 50.0)
    assert line.split()[0] == "running" and "2/5 epochs" in line and "val 60.00 %" in line
    assert "150 s/epoch" in line and "about 7 min left" in line and f"(pid {live_pid})" in line
    assert run_progress(d, now=1_000_000.0 + 10_000).seconds_left == 0.0  # overdue: never negative


def test_a_record_that_says_running_without_a_live_holder_is_stopped(tmp_path, monkeypatch):
    d = tmp_path / "run"
    _record(d, "running", [100.0])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(d, dead.pid)
    assert lock_holder(d) is None
    p = run_progress(d)
    assert p.status == "stopped" and p.holder is None and p.seconds_left == 400.0
    assert describe_progress(d).endswith("no checkpoint: starts again")
    import pcjax.experiment as ex

    monkeypatch.setattr(ex, "_within_epoch", lambda run_dir: (2, 3))
    assert describe_progress(d).endswith("resumes from epoch 2, chunk 3 (about 7 min to go)")
    monkeypatch.setattr(ex, "_within_epoch", lambda run_dir: None)
    monkeypatch.setattr(ex, "_checkpointed_epochs", lambda run_dir: 1)
    assert "resumes from the end of epoch 1" in describe_progress(d)


def test_a_run_starting_before_its_first_record_is_running(tmp_path, live_pid):
    d = tmp_path / "run"
    d.mkdir()
    _lock(d, live_pid)
    p = run_progress(d)
    assert p.status == "running" and p.epochs_done == 0 and p.seconds_left is None
    assert describe_progress(d).split() == ["running", "no", "epoch", "finished", "yet", "(pid", f"{live_pid})"]


def test_a_lock_from_another_host_is_reported_not_judged(tmp_path):
    d = tmp_path / "run"
    _record(d, "running", [10.0])
    _lock(d, 999_999_999, host="elsewhere")
    p = run_progress(d)
    assert p.status == "running" and p.holder["host"] == "elsewhere"
    assert "(pid 999999999 on elsewhere)" in describe_progress(d)


def test_complete_and_diverged_runs_show_no_time_left(tmp_path):
    for status in ("complete", "diverged"):
        d = tmp_path / status
        _record(d, status, [10.0, 10.0], epochs=2)
        p = run_progress(d)
        assert p.status == status and p.seconds_left is None
        assert "s/epoch" not in describe_progress(d) and "left" not in describe_progress(d)


def test_pcjax_status_lists_every_run_directory(tmp_path, capsys):
    _record(tmp_path / "a" / "seed0", "complete", [10.0], epochs=1)
    _record(tmp_path / "a" / "seed1", "interrupted", [10.0], epochs=3)
    _record(tmp_path / "a" / "seed1" / "wandb" / "x", "complete", [1.0], epochs=1)  # not a run of its own
    _record(tmp_path / "a" / "seed0" / "previous-20260101-000000", "failed", [], epochs=1)  # archived
    assert cli.main(["status", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:2] == ["complete", str(tmp_path / "a" / "seed0")]
    assert lines[1].split()[:2] == ["interrupted", str(tmp_path / "a" / "seed1")] and "1/3 epochs" in lines[1]
    assert cli.main(["status", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["status", str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_depth_study_list_shows_progress(tmp_path):
    root = Path(__file__).resolve().parents[1]
    _record(tmp_path / "mnist_resmlp8_bp_se" / "seed0", "complete", [10.0], epochs=1)
    out = subprocess.run([sys.executable, str(root / "experiments" / "depth_study.py"), "--rows", "mnist_resmlp8_bp_se",
                          "--seeds", "0,1", "--out", str(tmp_path), "--list"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["complete", "mnist_resmlp8_bp_se", "seed", "0", "1/1", "epochs,", "val", "50.00", "%"]
    assert lines[1].split() == ["not", "run", "mnist_resmlp8_bp_se", "seed", "1"]


def test_durations_read_as_words():
    from pcjax.progress import _duration

    assert _duration(20) == "under a minute"  # not "about under a minute"
    assert _duration(420) == "about 7 min"
    assert _duration(3660) == "about 1 h 1 min"


def _partial(d: Path, epoch: int, chunk: int, seconds: float, chunks_total: int | None, epochs: int = 5) -> None:
    """A within-epoch checkpoint whose header carries what run_progress reads."""
    import numpy as np

    from pcjax.checkpoint import CheckpointManager

    meta = {"epoch": epoch, "chunk": chunk, "seconds": seconds, "compile_seconds": 1.0,
            "config": {"trainer": {"epochs": epochs, "chunks_per_epoch": 40}}}
    if chunks_total is not None:
        meta["chunks_total"] = chunks_total
    CheckpointManager(d).save_partial({"w": np.zeros(2, np.float32)}, {"loss": np.zeros(3, np.float32)}, meta)


def test_before_the_first_epoch_ends_the_within_epoch_checkpoint_gives_the_estimate(tmp_path, live_pid):
    d = tmp_path / "run"
    d.mkdir()
    _lock(d, live_pid)
    _partial(d, 0, 4, 100.0, chunks_total=10)
    p = run_progress(d, now=(d / "partial.pcjax").stat().st_mtime + 20.0)
    assert (p.status, p.within_epoch, p.chunks_total, p.estimated) == ("running", (1, 4), 10, True)
    assert p.seconds_per_epoch == pytest.approx(250.0)  # 100 s for 4 of 10 chunks
    assert p.seconds_left == pytest.approx(5 * 250.0 - 100.0 - 20.0)
    line = describe_progress(d, now=(d / "partial.pcjax").stat().st_mtime + 20.0)
    assert "epoch 1: 4/10 chunks" in line and "250 s/epoch (est.)" in line and "about 19 min left" in line


def test_an_older_checkpoint_without_its_chunk_count_falls_back_to_chunks_per_epoch(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "train.log").write_text("starting\n")
    _partial(d, 0, 8, 100.0, chunks_total=None)
    p = run_progress(d)
    assert p.status == "interrupted" and p.chunks_total == 40 and p.seconds_per_epoch == pytest.approx(500.0)
    assert p.seconds_left == pytest.approx(5 * 500.0 - 100.0)  # not live: nothing subtracted
    assert describe_progress(d).endswith("resumes from epoch 1, chunk 8 (about 40 min to go)")


def test_a_folder_with_checkpoints_but_no_record_counts_its_checkpointed_epochs(tmp_path, live_pid):
    """A replica group's folder holds the checkpoints; its records live in its seed folders."""
    import numpy as np

    from pcjax.checkpoint import CheckpointManager

    d = tmp_path / "group"
    d.mkdir()
    _lock(d, live_pid)
    CheckpointManager(d).save({"w": np.zeros(2, np.float32)}, {"epoch": 1, "config": {"trainer": {"epochs": 5}}}, 1)
    p = run_progress(d)
    assert (p.status, p.epochs_done, p.epochs) == ("running", 1, 5)
    assert describe_progress(d).split()[:3] == ["running", "1/5", "epochs"]


def test_a_finished_group_folder_reads_complete(tmp_path):
    import numpy as np

    from pcjax.checkpoint import CheckpointManager

    d = tmp_path / "group"
    d.mkdir()
    (d / "train.log").write_text("done\n")
    CheckpointManager(d).save({"w": np.zeros(2, np.float32)}, {"epoch": 2, "config": {"trainer": {"epochs": 2}}}, 2)
    assert describe_progress(d).split() == ["complete", "2/2", "epochs"]
    e = tmp_path / "unfinished"
    e.mkdir()
    (e / "train.log").write_text("stopped\n")
    CheckpointManager(e).save({"w": np.zeros(2, np.float32)}, {"epoch": 1, "config": {"trainer": {"epochs": 3}}}, 1)
    assert describe_progress(e).split()[:3] == ["interrupted", "1/3", "epochs;"]  # epoch 1 of 3: resumable


def test_pcjax_status_into_a_closed_pipe_stops_quietly(tmp_path):
    for k in range(50):
        _record(tmp_path / f"r{k}", "complete", [1.0], epochs=1)
    proc = subprocess.run(f"{sys.executable} -m pcjax.cli status {tmp_path} | head -1", shell=True,
                          capture_output=True, text=True)
    assert proc.stdout.count("complete") == 1 and "BrokenPipeError" not in proc.stderr, proc.stderr
