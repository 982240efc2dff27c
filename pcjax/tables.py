"""Build the results table and plots from run records (``pcjax table`` / ``experiments/tables.py``).

Usage::

    python experiments/tables.py RUN_DIRS... [--out FILE.md] [--plots-dir DIR] [--expect name1,name2]
                                 [--ignore-key KEY] [--title "pcjax results"] [--readme README.md]
                                 [--no-write]

Each RUN_DIR may be a run directory, a ``record.json`` file, or a directory searched recursively
for ``record.json`` (e.g. a Hydra multirun directory).  Runs of one name that differ in config
keys other than the seed (a grid or an Optuna study) become one row per setting, with the swept
values in a ``Swept`` column, a table per sweep and a plot of accuracy against the swept keys.
The markdown table is printed; the full document (table, protocol note, sweeps, plots, run list)
is written next to the runs, to ``<RUN_DIR>/tables/README.md`` with its plots in
``<RUN_DIR>/tables/plots/`` (for several RUN_DIRS, under their common parent), or to ``--out``.
Without ``--out`` no file that git tracks is overwritten (the committed ``results/README.md`` is
regenerated only by naming it: ``--out results/README.md``).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .reporting import (
    NON_MATH_KEYS,
    RecordError,
    group_rows,
    load_records,
    make_plots,
    render_markdown,
    render_table,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run dirs, record.json files or dirs to search")
    parser.add_argument("--out", default=None,
                        help="markdown file to write (default: <runs dir>/tables/README.md; "
                             "an explicit --out may overwrite a tracked file)")
    parser.add_argument("--plots-dir", default=None, help="plot folder (default: <out dir>/plots)")
    parser.add_argument("--expect", action="append", default=[],
                        help="comma-separated row names expected; missing ones are listed as 'not run'")
    parser.add_argument("--ignore-key", action="append", default=[], metavar="KEY",
                        help="config key (or prefix, e.g. trainer.loop) that should not split rows, in "
                             f"addition to {', '.join(NON_MATH_KEYS)}")
    parser.add_argument("--title", default="pcjax results", help="document title")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--readme", default=None,
                        help="also replace the text between <!-- results:start --> and <!-- results:end --> "
                             "in this file (e.g. README.md) with the generated table")
    parser.add_argument("--readme-rows", default=None, metavar="PATTERNS",
                        help="with --readme: only the rows whose name matches one of these comma-separated "
                             "patterns (fnmatch, e.g. 'mnist_mlp_*_fulltrain,*_resmlp32_*') go into the README, "
                             "a short summary; the --out file keeps every row")
    return parser.parse_args(argv)


def default_out(runs: list[str]) -> Path:
    """``<runs dir>/tables/README.md``: beside the runs (the common parent of several)."""
    dirs = [Path(p) if Path(p).is_dir() else Path(p).parent for p in runs]
    if len({d.resolve() for d in dirs}) == 1:
        base = dirs[0]
    else:
        base = Path(os.path.commonpath([str(d.resolve()) for d in dirs]))
    return base / "tables" / "README.md"


def tracked(path: Path) -> list[str]:
    """Files at or under ``path`` that git tracks (empty outside a repository or without git)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    cwd = probe if probe.is_dir() else probe.parent
    try:
        proc = subprocess.run(["git", "-C", str(cwd), "ls-files", "--", str(path.resolve())],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def main(argv: list[str] | None = None, prog: str = "python experiments/tables.py") -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    expected = [n.strip() for chunk in args.expect for n in chunk.split(",") if n.strip()]
    try:
        rows = group_rows(load_records(args.runs), ignore=(*NON_MATH_KEYS, *args.ignore_key))
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_table(rows, expected))
    if args.no_write:
        return 0
    out = Path(args.out) if args.out else default_out(args.runs)
    plots_dir = Path(args.plots_dir) if args.plots_dir else out.parent / "plots"
    if args.out is None:
        clash = tracked(out) + ([] if args.plots_dir else tracked(plots_dir))
        if clash:
            print(f"error: the default output {out} would overwrite files tracked by git ({', '.join(clash[:3])}"
                  f"{', ...' if len(clash) > 3 else ''}); name the file with --out to overwrite it",
                  file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = make_plots(rows, plots_dir)
    command = f"{prog} " + shlex.join(argv)
    out.write_text(render_markdown(rows, command=command, title=args.title, expected=expected,
                                   plots=plots, out_dir=out.parent), encoding="utf-8")
    print(f"wrote {out} and {len(plots)} plot(s) in {plots_dir}", file=sys.stderr)
    if args.readme:
        summary = summary_rows(rows, args.readme_rows)
        update_readme(Path(args.readme), render_table(summary, [] if args.readme_rows else expected), command, out)
    return 0


def summary_rows(rows: list, patterns: str | None) -> list:
    """The rows whose name matches one of the comma-separated fnmatch ``patterns`` (all rows when None)."""
    if not patterns:
        return list(rows)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return [r for r in rows if any(fnmatch.fnmatchcase(r.name, p) for p in pats)]


START, END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(readme: Path, table: str, command: str, out: Path) -> None:
    """Replace the generated results block of ``readme`` (between the START and END markers)."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"error: {readme} has no {START} ... {END} block to fill")
    link = out.as_posix()
    block = (f"{START}\n<!-- generated by `{command}`; do not edit by hand -->\n\n{table}\n\n"
             f"Every row, details, protocols, plots and per-run lists: [{link}]({link}).\n{END}")
    head, rest = text.split(START, 1)
    readme.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
    print(f"updated the results block of {readme}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
