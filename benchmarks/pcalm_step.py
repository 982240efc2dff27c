"""One PC-ALM training step on a deep residual MLP: compile and step time, for comparing two commits.

The model, batch and PC-ALM setting of ``benchmarks.error_front --pcalm`` (muPC residual MLP, width 128,
batch 64, T = 2 x depth, state SGD 0.25, rho = dual_lr = 1, weight Adam 0.01), the error front on or off;
one jitted step compiled once, then the best and median of 5 calls. ``--save FILE`` writes the
parameters after the first step and its energy (``.npz``) so two commits' steps can be compared.
Run it from two checkouts, one after the other, on an otherwise idle machine:

    PYTHONPATH=. python -m benchmarks.pcalm_step 128 on [--save after.npz]
"""

from __future__ import annotations

import os
import sys
import time

import equinox as eqx
import jax
import numpy as np

from benchmarks.error_front import algorithm, problem


def measure(depth: int, front: bool, reps: int = 5, save: str | None = None) -> dict:
    """Compile seconds and step milliseconds (best, median of ``reps``) of one PC-ALM step."""
    model, x, y = problem(depth)
    algo = algorithm(depth, front, pcalm=True)
    state = algo.init(model)
    step = jax.jit(algo.train_step)
    t0 = time.perf_counter()
    after, metrics = step(state, x, y)
    jax.block_until_ready(metrics["energy"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(step(state, x, y)[1]["energy"])
        times.append(time.perf_counter() - t0)
    if save:
        leaves = jax.tree_util.tree_leaves(eqx.filter(after.model, eqx.is_inexact_array))
        np.savez(save, *[np.asarray(a) for a in leaves], energy=np.asarray(metrics["energy"]))
    times.sort()
    return {"depth": depth, "front": front, "compile_s": compile_s, "best_ms": 1e3 * times[0],
            "median_ms": 1e3 * times[len(times) // 2], "load": os.getloadavg()[0]}


if __name__ == "__main__":
    args = sys.argv[1:]
    save = args[args.index("--save") + 1] if "--save" in args else None
    r = measure(int(args[0]), args[1] == "on", save=save)
    print(f"| {r['depth']} | {'on' if r['front'] else 'off'} | {r['compile_s']:.1f} | {r['best_ms']:.1f} | "
          f"{r['median_ms']:.1f} | {r['load']:.1f} |", flush=True)
