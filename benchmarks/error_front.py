"""State PC's error front on deep residual MLPs: step time and compile time with and without it.

MNIST-shaped muPC residual MLP (width 128), T = depth, batch 64, latent SGD 0.3; one jitted training
step each way, compiled once, then the best of 5 interleaved timed calls. Also reports whether the
two steps give bit-identical weights (they agree to float32 rounding; float64 equality is a test).

    python -m benchmarks.error_front 16 32 64
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp

import pcjax as pj


def measure(depth: int, reps: int = 5) -> dict:
    """Step and compile seconds with the front off and on at ``depth`` layers."""
    model = pj.build_model("mlp", (28, 28, 1), 10, key=jax.random.PRNGKey(0), width=128, depth=depth, act="relu",
                           residual=True, init="mup", preact=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(64) % 10, 10)
    runs = {}
    for front in (False, True):
        algo = pj.PC(pj.PCConfig(T=depth, latent=pj.LatentOptim("sgd", 0.3)),
                     pj.WeightOptim(lr=0.03, schedule="constant"), 100, runtime=pj.Runtime(error_front=front))
        state = algo.init(model)
        step = jax.jit(algo.train_step)
        t0 = time.perf_counter()
        jax.block_until_ready(step(state, x, y)[1]["energy"])
        runs[front] = [step, state, time.perf_counter() - t0, []]
    for _ in range(reps):
        for front in (False, True):
            step, state, _, times = runs[front]
            t0 = time.perf_counter()
            jax.block_until_ready(step(state, x, y)[1]["energy"])
            times.append(time.perf_counter() - t0)
    off, on = min(runs[False][3]), min(runs[True][3])
    return {"depth": depth, "step_off_ms": 1e3 * off, "step_on_ms": 1e3 * on, "ratio": on / off,
            "compile_off_s": runs[False][2], "compile_on_s": runs[True][2], "load": os.getloadavg()[0]}


if __name__ == "__main__":
    for d in [int(a) for a in sys.argv[1:]] or [16, 32, 64]:
        r = measure(d)
        print(f"| {r['depth']} | {r['step_off_ms']:.1f} | {r['step_on_ms']:.1f} | {r['ratio']:.2f} | "
              f"{r['compile_off_s']:.1f} | {r['compile_on_s']:.1f} | {r['load']:.1f} |", flush=True)
