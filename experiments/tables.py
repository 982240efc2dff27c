#!/usr/bin/env python
"""Build the results table and plots from run records.

Usage::

    python experiments/tables.py RUN_DIRS... [--out results/README.md] [--plots-dir results/plots]
                                 [--expect name1,name2] [--title "pcjax results"] [--no-write]

Each RUN_DIR may be a run directory, a ``record.json`` file, or a directory searched recursively
for ``record.json`` (e.g. a Hydra multirun directory).  The markdown table is printed; the full
document (table, protocol note, plots, run list) is written to ``--out`` and marked as generated.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

try:
    import pcjax.reporting  # noqa: F401
except ImportError:  # run as a plain script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.reporting import RecordError, group_rows, load_records, make_plots, render_markdown, render_table


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run dirs, record.json files or dirs to search")
    parser.add_argument("--out", default="results/README.md", help="markdown file to write")
    parser.add_argument("--plots-dir", default=None, help="plot folder (default: <out dir>/plots)")
    parser.add_argument("--expect", action="append", default=[],
                        help="comma-separated row names expected; missing ones are listed as 'not run'")
    parser.add_argument("--title", default="pcjax results", help="document title")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    expected = [n.strip() for chunk in args.expect for n in chunk.split(",") if n.strip()]
    try:
        rows = group_rows(load_records(args.runs))
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_table(rows, expected))
    if args.no_write:
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = make_plots(rows, Path(args.plots_dir) if args.plots_dir else out.parent / "plots")
    command = "python experiments/tables.py " + shlex.join(argv)
    out.write_text(render_markdown(rows, command=command, title=args.title, expected=expected,
                                   plots=plots, out_dir=out.parent), encoding="utf-8")
    print(f"wrote {out} and {len(plots)} plot(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
