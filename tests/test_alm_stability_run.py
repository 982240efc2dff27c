"""experiments/alm_stability.py: the spectral radius of PC-ALM's relaxation at each checkpoint of a run."""

import json
import sys

import pytest

from conftest import ROOT, tiny_config

sys.path.insert(0, str(ROOT / "experiments"))

from alm_stability import alm_stability, main  # noqa: E402


def _train(run_dir, algorithm: str) -> None:
    from pcjax.experiment import run_experiment

    c = tiny_config(epochs=2)
    c.algorithm.name = algorithm
    c.model.depth = 2
    run_experiment(c, run_dir=run_dir)


def test_each_checkpoint_gets_a_saddle_and_a_radius_per_rate(tmp_path, capsys):
    _train(tmp_path / "run", "pcalm")
    rows = alm_stability(tmp_path / "run", [0.05, 3.0], batch=16, saddle_rate=0.05, saddle_steps=3000, iters=300)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert max(r["saddle_gap"]) < 1e-3
        # a small state rate contracts around the saddle; a rate far above 2 / curvature cannot
        assert r["radius"][0.05] < 1.0 < r["radius"][3.0]
    out = tmp_path / "s.json"
    assert main([str(tmp_path / "run"), "--rates", "0.05", "--batch", "16", "--saddle-steps", "500",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["epoch"] == 1
    assert "did not reach the saddle" not in capsys.readouterr().err
    # an unstable saddle search is named, not reported as the saddle's radius
    assert main([str(tmp_path / "run"), "--rates", "0.05", "--batch", "16", "--saddle-rate", "3.0",
                 "--saddle-steps", "200"]) == 0
    assert "did not reach the saddle at epoch(s) [1, 2]" in capsys.readouterr().err


def test_a_run_of_another_algorithm_is_refused_by_name(tmp_path):
    _train(tmp_path / "run", "pc")
    with pytest.raises(SystemExit, match="not a PC-ALM run"):
        alm_stability(tmp_path / "run", [0.1], batch=8, saddle_steps=10)


def test_a_run_without_a_checkpoint_is_named_not_a_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "error:" in capsys.readouterr().err
