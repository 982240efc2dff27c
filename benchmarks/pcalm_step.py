"""One PC-ALM training step on a deep residual MLP: compile and step time, for comparing two commits.

MNIST-shaped muPC residual MLP (width 128, ReLU, pre-activation), batch 64, PC-ALM at the paper's
budget T = 2 x depth (state SGD 0.25, rho = dual_lr = 1, weight Adam 0.01), the error front on or off;
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
import jax.numpy as jnp
import numpy as np

import pcjax as pj


def measure(depth: int, front: bool, reps: int = 5, save: str | None = None) -> dict:
    """Compile seconds and step milliseconds (best, median of ``reps``) of one PC-ALM step."""
    model = pj.build_model("mlp", (28, 28, 1), 10, key=jax.random.PRNGKey(0), width=128, depth=depth, act="relu",
                           residual=True, init="mup", preact=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(64) % 10, 10)
    algo = pj.PCALM(pj.Inference(2 * depth, pj.LatentOptim("sgd", 0.25)), pj.EnergySpec(),
                    pj.WeightOptim(lr=0.01, schedule="constant"), 100, runtime=pj.Runtime(error_front=front))
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
