"""The error front on deep residual MLPs: step time and compile time with and without it.

MNIST-shaped muPC residual MLP (width 128), batch 64; state PC at T = depth with latent SGD 0.3, or
(``--pcalm``) PC-ALM at the paper's budget T = 2 x depth with state SGD 0.25, rho = dual_lr = 1; one
jitted training step each way, compiled once, then the best of 5 interleaved timed calls. The two
steps agree to float32 rounding (float64 equality is a test: tests/test_error_front.py, tests/test_pcalm.py).

    python -m benchmarks.error_front 16 32 64
    python -m benchmarks.error_front --pcalm 16 32 64
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp

import pcjax as pj


def algorithm(depth: int, front: bool, pcalm: bool):
    runtime = pj.Runtime(error_front=front)
    if pcalm:
        return pj.PCALM(pj.Inference(2 * depth, pj.LatentOptim("sgd", 0.25)), pj.EnergySpec(),
                        pj.WeightOptim(lr=0.01, schedule="constant"), 100, runtime=runtime)
    return pj.PC(pj.PCConfig(T=depth, latent=pj.LatentOptim("sgd", 0.3)),
                 pj.WeightOptim(lr=0.03, schedule="constant"), 100, runtime=runtime)


def problem(depth: int):
    """The benchmark's model (muPC residual MLP, width 128, pre-activation ReLU) and a batch of 64."""
    model = pj.build_model("mlp", (28, 28, 1), 10, key=jax.random.PRNGKey(0), width=128, depth=depth, act="relu",
                           residual=True, init="mup", preact=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(64) % 10, 10)
    return model, x, y


def measure(depth: int, reps: int = 5, pcalm: bool = False) -> dict:
    """Step and compile seconds with the front off and on at ``depth`` layers."""
    model, x, y = problem(depth)
    runs = {}
    for front in (False, True):
        algo = algorithm(depth, front, pcalm)
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
    args = sys.argv[1:]
    pcalm = "--pcalm" in args
    for d in [int(a) for a in args if a != "--pcalm"] or [16, 32, 64]:
        r = measure(d, pcalm=pcalm)
        print(f"| {r['depth']} | {r['step_off_ms']:.1f} | {r['step_on_ms']:.1f} | {r['ratio']:.2f} | "
              f"{r['compile_off_s']:.1f} | {r['compile_on_s']:.1f} | {r['load']:.1f} |", flush=True)
