"""examples/quickstart.py runs as a plain script: trains PC and BP on digits and writes its figure."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "quickstart.py"


def test_quickstart_is_a_percent_script():
    text = SCRIPT.read_text()
    assert text.count("# %%") >= 5 and "format_name: percent" in text


def test_quickstart_runs_as_a_script(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the script picks Agg itself
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "fig"), "--epochs", "2", "--T", "4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PC: test accuracy" in proc.stdout and "BP: test accuracy" in proc.stdout
    figure = tmp_path / "fig" / "quickstart.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
