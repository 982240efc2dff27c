"""The study runner (experiments/depth_study.py): --replicas runs a row's consecutive seeds as one
program whose replicas write the per-seed records a seed-by-seed run writes, and a finished row is
skipped on the next call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset.name=digits", "dataset.limit_train=256", "dataset.limit_test=100", "model.width=16", "model.depth=1",
        "algorithm.T=2", "trainer.epochs=1", "trainer.batch_size=64", "tracking.backends=[jsonl]"]


def _study(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "depth_study.py"), "--rows", "mnist_mlp_pc_se",
                           "--out", str(out), *args, *TINY], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_replicas_write_one_record_per_seed_and_finished_rows_are_skipped(tmp_path):
    proc = _study(tmp_path, "--seeds", "3,4", "--replicas")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "seeds 3-4 (one program)" in proc.stdout
    for seed in (3, 4):
        record = json.loads((tmp_path / "mnist_mlp_pc_se" / f"seed{seed}" / "record.json").read_text())
        assert record["status"] == "complete" and record["seed"] == seed and record["replica"]
    again = _study(tmp_path, "--seeds", "3,4", "--replicas")
    assert again.returncode == 0 and again.stdout.count("complete  mnist_mlp_pc_se seed") == 2, again.stdout
