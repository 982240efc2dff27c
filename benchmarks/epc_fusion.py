"""Why ePC compiles its training step without XLA's CPU fusion pass (``algorithm.xla_fusion=auto``).

    python -m benchmarks.epc_fusion [--depths 16,32,64,128] [--T 4] [--batch 64] [--repeats 5]
                                    [--md benchmarks/results/epc_fusion_cpu.md] [--json FILE]

Times one ePC training step (``experiment=mnist_resmlp<depth>_epc_se`` with ``algorithm.T``) of the
muPC residual MLP (width 128) at each depth, compiled with the fusion pass (``xla_fusion=true``) and
without it (``false``), each in the same process: compile seconds and the median of ``--repeats`` steps.
On a residual chain the pass inlines the additions of the error gradient's cotangents,
dE/de_l = dE/dz_l + dE/dz_{l+1} + ..., into every layer's update (each fusion re-adds the whole
chain above it), so with it compile time and step time grow with depth squared. The last printed
line is one JSON object; ``--md`` writes a table (hardware named) and ``--json`` appends the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from .speed import append_json, device_info

FUSION_OFF = {"xla_disable_hlo_passes": "fusion"}


def time_step(depth: int, fusion: bool, *, T: int = 4, batch: int = 64, repeats: int = 5) -> dict:
    """Compile seconds and median seconds per ePC step at ``depth``, with or without the fusion pass."""
    import equinox as eqx

    import pcjax as pj
    from pcjax.experiment import build, to_dict

    c = to_dict(pj.load_config(None, overrides=[f"experiment=mnist_resmlp{depth}_epc_se", f"algorithm.T={T}"]))
    model, algo = build(c, 100, (28, 28, 1), 10)
    arrays, static = eqx.partition(algo.init(model), eqx.is_array)
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(batch) % 10, 10)

    def step(a, x, y):
        return eqx.filter(algo.train_step(eqx.combine(a, static), x, y)[0], eqx.is_array)

    jitted = jax.jit(step, compiler_options=None if fusion else FUSION_OFF)
    t0 = time.perf_counter()
    compiled = jitted.lower(arrays, x, y).compile()
    compile_s = time.perf_counter() - t0
    a = jax.block_until_ready(compiled(arrays, x, y))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = jax.block_until_ready(compiled(a, x, y))
        times.append(time.perf_counter() - t0)
    return {"depth": depth, "fusion": fusion, "compile_s": compile_s, "step_s": statistics.median(times)}


def measure(depths=(16, 32, 64), T: int = 4, batch: int = 64, repeats: int = 5) -> dict:
    """Both compilations at every depth; ``rows`` holds one entry per (depth, fusion)."""
    out = {"workload": f"ePC step, mnist resmlp width 128, T={T}, batch {batch}", **device_info(),
           "jax": jax.__version__, "rows": []}
    for depth in depths:
        for fusion in (True, False):
            out["rows"].append(time_step(depth, fusion, T=T, batch=batch, repeats=repeats))
    out["load_avg"] = round(os.getloadavg()[0], 2)
    return out


def markdown(result: dict, command: str) -> str:
    """The results table: per depth, compile and step seconds with and without fusion, and the ratio."""
    by = {(r["depth"], r["fusion"]): r for r in result["rows"]}
    lines = [f"# ePC training step with and without XLA's CPU fusion pass\n",
             f"{result['workload']}; {result['device_name']}, JAX {result['jax']}; load average "
             f"{result['load_avg']} while measuring (other jobs shared the cores: absolute times are upper "
             f"bounds, the ratios are the point). Command: `{command}`.\n",
             "| depth | compile, fusion on (s) | compile, off (s) | step, on (s) | step, off (s) | step on / off |",
             "|---|---|---|---|---|---|"]
    for depth in sorted({d for d, _ in by}):
        on, off = by.get((depth, True)), by.get((depth, False))
        if on is None or off is None:
            continue
        lines.append(f"| {depth} | {on['compile_s']:.1f} | {off['compile_s']:.1f} | {on['step_s']:.4f} | "
                     f"{off['step_s']:.4f} | {on['step_s'] / off['step_s']:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="16,32,64")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--md", default=None, help="write the table to this markdown file")
    p.add_argument("--json", default=None, help="append the result to this results file (benchmarks.speed format)")
    args = p.parse_args(argv)
    result = measure(tuple(int(d) for d in args.depths.split(",")), args.T, args.batch, args.repeats)
    if args.md:
        cmd = "python -m benchmarks.epc_fusion " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.md, "w") as fh:
            fh.write(markdown(result, cmd.strip()))
    if args.json:
        append_json(args.json, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
