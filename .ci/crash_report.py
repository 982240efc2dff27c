"""Reprint the crash reports in a pytest log, compactly, so the end of a CI log shows them.

A crashed pytest-xdist worker's faulthandler dump ("Fatal Python error: ...", or "Timeout (...)!"
from ``faulthandler_timeout``) lists every thread's stack, then its extension modules; in a long log it
scrolls far above the summary. This prints each dump again: the signal, the crashing thread's stack in
full, the first frames of every other thread, and the line naming the test the worker was running.
Usage: ``python .ci/crash_report.py LOG``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAMED = re.compile(r"worker '[\w-]+' crashed while running")
START = re.compile(r"^(Fatal Python error: .*|Timeout \(\d+:\d\d:\d\d\)!)")
# what ends a dump: its extension-module list, the next dump, or pytest's own output resuming
END = re.compile(START.pattern + r"|^Extension modules:|^\[gw\d+\]|^(PASSED|FAILED|=+ )")
OTHER_FRAMES = 4


def crash_reports(lines: list[str]) -> list[list[str]]:
    """Each dump in ``lines``: its lines from the start marker up to (not including) the line that ends it (END)."""
    reports, i = [], 0
    while i < len(lines):
        if START.match(lines[i]):
            block = [lines[i]]
            i += 1
            while i < len(lines) and not END.match(lines[i]):
                block.append(lines[i])
                i += 1
            reports.append(block)
        else:
            i += 1
    return reports


def compact(block: list[str]) -> list[str]:
    """The crashing thread in full; other threads cut to their first OTHER_FRAMES frames (innermost first)."""
    out, current, frames = [], False, 0
    for line in block:
        if line.startswith(("Current thread", "Thread ", "Stack (most recent call first)")):
            current = line.startswith(("Current thread", "Stack"))
            frames = 0
            out.append(line)
        elif line.lstrip().startswith("File "):
            frames += 1
            if current or frames <= OTHER_FRAMES:
                out.append(line)
            elif frames == OTHER_FRAMES + 1:
                out.append("  ...")
        else:
            out.append(line)
    return out


def main(path: str) -> int:
    lines = Path(path).read_text(errors="replace").splitlines()
    reports = crash_reports(lines)
    named = [line for line in lines if NAMED.search(line)]
    if not reports and not named:
        return 0
    print("\n" + "=" * 30 + f" crash reports ({len(reports)}) " + "=" * 30)
    for block in reports:
        print("\n".join(compact(block)))
        print("-" * 80)
    for line in dict.fromkeys(named):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
