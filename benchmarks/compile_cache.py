"""The persistent compilation cache: one short run started three times, each in a new process.

    python -m benchmarks.compile_cache [--experiment mnist_mlp_pc_se] [--limit-train 6000] [--epochs 1]
                                       [--md benchmarks/results/compile_cache_cpu.md]

Runs ``benchmarks.startup`` (a short training run without checkpoints or trackers; its record's
``compile_seconds`` and ``time_to_first_step_seconds``) in a fresh Python process three times: with
the cache off (``trainer.compile_cache=null``), then twice with the same new, empty cache folder
(``cold``: the run compiles and fills it; ``warm``: a second identical run reads it). Reported per
start: the two record fields and the process's wall time (interpreter start, imports and data loading
included). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(experiment: str, limit_train: int, epochs: int, cache: str) -> dict:
    """One run of ``benchmarks.startup`` in a new process with ``trainer.compile_cache=cache``."""
    cmd = [sys.executable, "-m", "benchmarks.startup", "--experiment", experiment, "--limit-train", str(limit_train),
           "--epochs", str(epochs), "--override", f"trainer.compile_cache={cache}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"compile_seconds": out["compile_seconds"], "time_to_first_step_seconds": out["time_to_first_step_seconds"],
            "wall_seconds": wall}


def markdown(res: dict) -> str:
    rows = [("cache off", res["off"]), ("cache cold (empty folder)", res["cold"]), ("cache warm (second run)", res["warm"])]
    lines = ["# Persistent compilation cache: cold vs warm", "",
             f"`{res['experiment']}` on the first {res['limit_train']} training images, {res['epochs']} epoch(s), each "
             f"start in a new process; {res['machine']}, JAX {res['jax']}; 1-minute load {res['load_before']:.1f} before, "
             f"{res['load_after']:.1f} after. Command: `{res['command']}`.", "",
             "| start | compile s | time to first step s | process wall s |", "|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['compile_seconds']:.2f} | {r['time_to_first_step_seconds']:.2f} | "
                     f"{r['wall_seconds']:.1f} |")
    lines += ["", f"Warm / cold compile seconds: **{res['warm']['compile_seconds'] / res['cold']['compile_seconds']:.2f}**; "
              f"the run's default is `trainer.compile_cache=auto` (`$PCJAX_COMPILE_CACHE`, else "
              "`~/.cache/pcjax/jax-compile`).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="mnist_mlp_pc_se")
    p.add_argument("--limit-train", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--md", default=None)
    a = p.parse_args(argv)
    import jax

    load0 = os.getloadavg()[0]
    res = {"experiment": a.experiment, "limit_train": a.limit_train, "epochs": a.epochs, "jax": jax.__version__,
           "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
           "command": "python -m benchmarks.compile_cache " + " ".join(argv if argv is not None else sys.argv[1:])}
    res["off"] = start(a.experiment, a.limit_train, a.epochs, "null")
    with tempfile.TemporaryDirectory() as cache:
        res["cold"] = start(a.experiment, a.limit_train, a.epochs, cache)
        res["warm"] = start(a.experiment, a.limit_train, a.epochs, cache)
    res["load_before"], res["load_after"] = load0, os.getloadavg()[0]
    if a.md:
        Path(a.md).write_text(markdown(res))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
