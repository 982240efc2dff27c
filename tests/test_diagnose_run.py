"""experiments/diagnose_run.py: a run's per-block diagnostics read back from its latest checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tiny_config

sys.path.insert(0, str(ROOT / "experiments"))

from diagnose_run import diagnose_run  # noqa: E402


def _train(run_dir, *, algorithm: str = "pc", diagnostics: bool = True, checkpoint: bool = True) -> dict:
    from pcjax.experiment import run_experiment

    c = tiny_config(epochs=2)
    c.algorithm.name = algorithm
    c.model.depth = 2
    c.trainer.diagnostics, c.trainer.checkpoint = diagnostics, checkpoint
    run_experiment(c, run_dir=run_dir)
    return json.loads((run_dir / "record.json").read_text())


def test_diagnose_run_equals_the_diagnostics_recorded_during_training(tmp_path):
    """The record's last-epoch diagnostics are taken on the state the last checkpoint holds and on the same
    fixed batch (the first images of the run's training split), so reading the checkpoint back must give
    the same per-block cosines and norms."""
    record = _train(tmp_path / "run")
    want = record["epochs"][-1]["diagnostics"]
    got = diagnose_run(tmp_path / "run")
    assert got["epoch"] == 2 and got["batch"] == 64
    assert len(got["cosine_bp"]) == len(want["cosine_bp"]) == 3
    for key in ("cosine_bp", "update_norm", "bp_grad_norm"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["size_ratio"], np.array(want["update_norm"]) / np.array(want["bp_grad_norm"]),
                               rtol=1e-4)
    # the trained state, not a fresh one: the first epoch's diagnostics differ
    assert not np.allclose(record["epochs"][0]["diagnostics"]["bp_grad_norm"], got["bp_grad_norm"], rtol=1e-3)


def test_backprop_run_reads_cos_one_at_every_block(tmp_path):
    _train(tmp_path / "run", algorithm="bp", diagnostics=False)
    got = diagnose_run(tmp_path / "run", batch=32)
    assert got["batch"] == 32
    np.testing.assert_allclose(got["cosine_bp"], 1.0, atol=1e-5)
    np.testing.assert_allclose(got["size_ratio"], 1.0, rtol=1e-4)


def test_missing_record_or_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="record.json"):
        diagnose_run(tmp_path)
    _train(tmp_path / "run", diagnostics=False, checkpoint=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        diagnose_run(tmp_path / "run")
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "diagnose_run.py"), str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr


def test_overrides_rebuild_the_algorithm_on_the_same_weights(tmp_path):
    """--set algorithm.T=...: the same checkpoint probed with another inference budget. The run's own T gives
    the recorded numbers; a longer relaxation changes PC's update, and backprop's gradient (the same weights)
    is unchanged."""
    record = _train(tmp_path / "run")
    same = diagnose_run(tmp_path / "run", overrides={"algorithm.T": 2})
    np.testing.assert_allclose(same["cosine_bp"], record["epochs"][-1]["diagnostics"]["cosine_bp"], rtol=1e-4, atol=1e-7)
    longer = diagnose_run(tmp_path / "run", overrides={"algorithm.T": 8})
    assert longer["overrides"] == {"algorithm.T": 8}
    np.testing.assert_allclose(longer["bp_grad_norm"], same["bp_grad_norm"], rtol=1e-5)
    assert not np.allclose(longer["update_norm"], same["update_norm"], rtol=1e-3), "T must change PC's update"
    with pytest.raises(FileNotFoundError, match="no section nosuch"):
        diagnose_run(tmp_path / "run", overrides={"nosuch.key": 1})
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "diagnose_run.py"), str(tmp_path / "run"),
                           "--set", "algorithm.T=8"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "algorithm.T=8" in proc.stdout, proc.stderr
