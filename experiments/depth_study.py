#!/usr/bin/env python
"""Run the deep-PC depth study row by row, resumable: a row whose record is complete is skipped.

Each run is ``python experiments/train.py experiment=ROW seed=S hydra.run.dir=OUT/ROW/seedS``; an
interrupted run continues from its last checkpoint (``trainer.resume=OUT/ROW/seedS``) the next time.

    python experiments/depth_study.py --datasets mnist --depths 8,16,32 --algos epc_se,bp_se --seeds 0,1,2
    python experiments/depth_study.py --list        # each run's status, epochs done, time left
    python experiments/depth_study.py --rows 'mnist_abl64_*'   # any experiment configs, by name pattern
    python experiments/depth_study.py --rows 'mnist_resmlp8_*' --seeds 0,1,2 --replicas   # seeds as one program

With ``--replicas`` a row whose seeds are consecutive and none of them started runs as one process
(``trainer.replicas=K``, group directory OUT/ROW holding the checkpoint, replica k writing OUT/ROW/seed<k>/
as a separate run would); rows where that does not apply run seed by seed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcjax.checkpoint import has_checkpoint  # noqa: E402
from pcjax.progress import progress_details, run_progress  # noqa: E402
ALGOS = ("pc_se", "pc_se_lalr", "epc_se", "bpc_skip_lalr", "bp_se")


def status(run_dir: Path) -> str | None:
    """The run's record status, or None when it has no readable record."""
    try:
        return json.loads((run_dir / "record.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run_groups(runs: list[tuple[str, int]], out: Path, overrides: list[str]) -> tuple[list, list]:
    """Run each row's seeds as one replica group where they are consecutive and none has started on its
    own (a group with a checkpoint in OUT/ROW resumes); returns (the runs left to run one by one, failures)."""
    by_row: dict[str, list[int]] = {}
    for row, seed in runs:
        by_row.setdefault(row, []).append(seed)
    left, failed = [], []
    for row, seeds in by_row.items():
        seeds = sorted(seeds)
        single = [out / row / f"seed{s}" for s in seeds]
        if (len(seeds) < 2 or seeds != list(range(seeds[0], seeds[0] + len(seeds)))
                or any(status(d) or has_checkpoint(d) for d in single)):
            left += [(row, s) for s in seeds]
            continue
        group = out / row
        cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), f"experiment={row}", f"seed={seeds[0]}",
               f"trainer.replicas={len(seeds)}", f"hydra.run.dir={group}", "trainer.progress=false", *overrides]
        if has_checkpoint(group):
            cmd.append(f"trainer.resume={group}")
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, WANDB_MODE="offline"))
        print(f"[{time.time() - t0:7.1f} s] {row} seeds {seeds[0]}-{seeds[-1]} (one program): exit {proc.returncode}, "
              f"status {[status(d) for d in single]}", flush=True)
        if proc.returncode:
            failed.append(f"{row} seeds {seeds[0]}-{seeds[-1]}")
    return left, failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="mnist,fashion_mnist")
    p.add_argument("--depths", default="8,16,32,64,128")
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--rows", default=None,
                   help="run these experiment configs instead (comma-separated names or patterns, e.g. 'mnist_abl64_*')")
    p.add_argument("--out", default=str(ROOT / "results" / "runs"))
    p.add_argument("--list", action="store_true", help="only list the runs: status, epochs done, last validation accuracy, s/epoch, time left, what a restart resumes from")
    p.add_argument("--replicas", action="store_true",
                   help="run a row's consecutive seeds as one vmapped program (trainer.replicas=K)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    a = p.parse_args(argv)
    runs = [(f"{d}_resmlp{n}_{alg}", int(s)) for d in a.datasets.split(",") for n in a.depths.split(",")
            for alg in a.algos.split(",") for s in a.seeds.split(",")]
    if a.rows:
        names = sorted(f.stem for f in (ROOT / "conf" / "experiment").glob("*.yaml"))
        picked = [n for pat in a.rows.split(",") for n in names if fnmatch.fnmatchcase(n, pat)]
        if not picked:
            p.error(f"--rows {a.rows!r} matches no config in conf/experiment/")
        runs = [(row, int(s)) for row in dict.fromkeys(picked) for s in a.seeds.split(",")]
    failed = []
    if a.replicas and not a.list:
        runs, failed = run_groups(runs, Path(a.out), a.overrides)
    for row, seed in runs:
        run_dir = Path(a.out) / row / f"seed{seed}"
        if a.list:
            p = run_progress(run_dir)
            print(f"{p.status:>11}  {row} seed {seed}  {progress_details(p)}".rstrip(), flush=True)
            continue
        st = status(run_dir)
        if st in ("complete", "diverged"):  # a diverged run is a result: not rerun
            print(f"{st:>11}  {row} seed {seed}", flush=True)
            continue
        cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), f"experiment={row}", f"seed={seed}",
               f"hydra.run.dir={run_dir}", "trainer.progress=false", *a.overrides]
        if has_checkpoint(run_dir):
            cmd.append(f"trainer.resume={run_dir}")
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, WANDB_MODE="offline"))
        print(f"[{time.time() - t0:7.1f} s] {row} seed {seed}: exit {proc.returncode}, status {status(run_dir)}",
              flush=True)
        if proc.returncode:
            failed.append(f"{row} seed {seed}")
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
