""".ci/crash_report.py finds a real faulthandler dump in a log and reprints the crashing thread's stack."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CRASH = """
import faulthandler, threading, time
threading.Thread(target=time.sleep, args=(30,), daemon=True, name="idle").start()
def innermost_crashing_frame():
    faulthandler._sigsegv()
innermost_crashing_frame()
"""


def test_crash_report_reprints_a_segfault_dump(tmp_path):
    crashed = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CRASH], capture_output=True, text=True)
    assert crashed.returncode != 0
    log = tmp_path / "pytest.log"
    log.write_text("....  [ 95%]\n" + crashed.stderr + "[gw1] node down: Not properly terminated\n"
                   "worker 'gw1' crashed while running 'tests/test_x.py::test_y'\n" + "." * 70 + "\n")
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "crash_report.py"), str(log)],
                         capture_output=True, text=True, check=True).stdout
    assert "crash reports (1)" in out and "Fatal Python error: Segmentation fault" in out
    current = out.split("Current thread", 1)[1]
    assert "innermost_crashing_frame" in current
    assert "Extension modules" not in out
    assert out.rstrip().endswith("worker 'gw1' crashed while running 'tests/test_x.py::test_y'")


def test_crash_report_is_silent_on_a_clean_log(tmp_path):
    log = tmp_path / "pytest.log"
    log.write_text("python -m pytest --only-rerun 'worker .* crashed while running'\n....  [100%]\n"
                   "= 3 passed in 1.00s =\n")
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "crash_report.py"), str(log)],
                         capture_output=True, text=True, check=True).stdout
    assert out == ""
