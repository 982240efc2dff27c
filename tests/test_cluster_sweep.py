"""Cluster sweeps through submitit: the ``submitit_local`` launcher (and pcjax's ``local`` / ``slurm``
launcher configs) run each job of a multirun as its own process, and the sweep is tabulated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ["algorithm=pc", "energy=gaussian", "lalr=constant", "trainer.epochs=1", "trainer.progress=false",
        "model.width=16", "model.depth=1", "tracking.backends=[jsonl]"]

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed "
                    "(pip install 'pcjax[cluster]')")


def _train(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_submitit_local_multirun_completes_and_is_tabulated(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train(["-m", "hydra/launcher=submitit_local", "algorithm.T=2,3", *FAST, f"hydra.sweep.dir={sweep}"],
                  tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = sorted(sweep.rglob("record.json"))
    assert len(records) == 2
    assert list((sweep / ".submitit").rglob("*_log.out")), "submitit wrote no job logs"
    out = tmp_path / "table.md"
    tab = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), str(sweep), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert tab.returncode == 0, tab.stderr
    text = out.read_text()
    assert "algorithm.T" in text  # one row per swept value, the swept key as a column
    rows = [line for line in text.splitlines() if line.startswith("| digits_mlp_pc")]
    assert len(rows) >= 2, text


def test_pcjax_launcher_configs_compose(tmp_path):
    """``hydra/launcher=slurm`` and ``=local`` resolve to submitit with pcjax's defaults (no cluster needed)."""
    for launcher, target, key in (("slurm", "SlurmLauncher", "gpus_per_node: 1"),
                                  ("local", "LocalLauncher", "timeout_min: 120")):
        proc = _train([f"hydra/launcher={launcher}", "--cfg", "hydra", "--package", "hydra.launcher"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert target in proc.stdout and key in proc.stdout, proc.stdout
