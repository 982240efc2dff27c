"""The depth study's and the 64-layer ablation's table scripts, on the committed run records: the
tables carry every block of rows, diverged runs are reported as such, and the plots are written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "runs"


def _run(script: str, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "doc.md"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / script), str(RUNS), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out.read_text()


def test_ablation_table_and_plots(tmp_path):
    text = _run("ablation_table.py", tmp_path, "--plot", str(tmp_path / "heat.png"), "--diag-plot",
                str(tmp_path / "diag.png"))
    assert "<!-- ablation-table:start -->" in text and "<!-- ablation-table:end -->" in text
    rows = [line for line in text.splitlines() if line.startswith(("| standard", "| bidirectional"))]
    assert len(rows) == 4  # energy x skips
    assert "diverged (batch" in text and "References on the same data: BP" in text
    assert (tmp_path / "heat.png").stat().st_size > 0 and (tmp_path / "diag.png").stat().st_size > 0


def test_depth_table_counts_diverged_seeds(tmp_path):
    text = _run("depth_table.py", tmp_path, "--plot", str(tmp_path / "depth.png"), "--diag-plot",
                str(tmp_path / "diag.png"))
    lines = [line for line in text.splitlines() if line.startswith("| mnist | 32 |")]
    assert len(lines) == 1 and "n=3" in lines[0] and "diverged" in lines[0]
    assert (tmp_path / "depth.png").exists() and (tmp_path / "diag.png").exists()
