"""pcjax's ePC training step against the plain-JAX calibration script's, timed back to back in one process.

    python -m benchmarks.epc_step [--depth 32] [--T 32] [--batch 64] [--rounds 15]
                                  [--md benchmarks/results/epc_step_cpu.md]

Workload: the muPC residual MLP of ``experiment=mnist_resmlp<depth>_epc_se`` (width 128, pre-activation
ReLU blocks, no biases), T error steps of SGD, one batch of random MNIST-shaped inputs on the device.
Cases, each compiled once and then timed in ``--rounds`` rounds that visit every case in turn (so that
a change of machine load hits every case alike):

* ``script``: the step of ``../shared/tools/calibrate_deep_pc.py`` (its ePC maths restated below:
  E = sum 0.5||e_l||^2 + 0.5||y_t - out||^2 on the errors, Adam on the local PC weight gradient),
  ``jax.jit`` as the script runs it (fusion on), and with XLA's CPU fusion pass off;
* ``pcjax``: ``train_step`` of the experiment's algorithm (state and metrics returned, as the trainer
  uses them), compiled with the runtime the trainer resolves (fusion off for ePC from 32 nodes on a
  CPU), and with fusion on;
* ``pcjax reuse_sweep``: the same with ``algorithm.params.reuse_sweep=true`` (the energy takes the
  sweep's own predictions; equal to the default up to rounding), fusion off and on.

Printed and written (``--md``): per case the median and the fastest step in ms, compile seconds, and
the median over rounds of each case's time over the script's (fused) time in the same round; the
1-minute load average (``/proc/loadavg``) before and after. The last printed line is one JSON object.
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
import numpy as np

from .speed import device_info

FUSION_OFF = {"xla_disable_hlo_passes": "fusion"}


def loadavg() -> str:
    """The first three fields of /proc/loadavg (1, 5, 15 minutes)."""
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def script_step(depth: int, T: int, *, width: int = 128, beta: float = 0.1, lr_e: float = 0.3, lr: float = 0.03):
    """The calibration script's ePC step (its functions) and its initial arguments (W, opt state)."""
    import optax

    H, N, D, C = depth, width, 784, 10
    a_in, a_h, a_out = 1 / np.sqrt(D), 1 / np.sqrt(N * H), 1 / N

    def f(W, l, h):
        return a_in * h @ W["in"] if l == 1 else h + a_h * jax.nn.relu(h) @ W["h"][l - 2]

    def readout(W, h):
        return a_out * jax.nn.relu(h) @ W["out"]

    def forward(W, x):
        h = x
        for l in range(1, H + 1):
            h = f(W, l, h)
        return readout(W, h)

    def pc_energy(W, hs, x, y):
        e, prev = 0.0, x
        for l in range(1, H + 1):
            e += 0.5 * jnp.sum((hs[l - 1] - f(W, l, prev)) ** 2)
            prev = hs[l - 1]
        return (e + 0.5 * jnp.sum((y - readout(W, prev)) ** 2)) / x.shape[0]

    def epc_states(W, x, y):
        def states(es):
            hs, h = [], x
            for l in range(1, H + 1):
                h = f(W, l, h) + es[l - 1]
                hs.append(h)
            return tuple(hs)

        def E(es):
            hs = states(es)
            return 0.5 * sum(jnp.sum(e ** 2) for e in es) + 0.5 * jnp.sum((y - readout(W, hs[-1])) ** 2)

        es = tuple(jnp.zeros((x.shape[0], N)) for _ in range(H))
        g = jax.grad(E)

        def body(es, _):
            return jax.tree_util.tree_map(lambda e, d: e - lr_e * d, es, g(es)), None

        es, _ = jax.lax.scan(body, es, None, length=T)
        return states(es)

    opt = optax.adam(lr)

    def step(W, s, x, y):
        out = forward(W, x)
        yt = jax.lax.stop_gradient(out + beta * (y - out))
        hs = epc_states(W, x, yt)
        gW = jax.tree_util.tree_map(lambda g: g / beta, jax.grad(pc_energy)(W, jax.lax.stop_gradient(hs), x, yt))
        u, s = opt.update(gW, s, W)
        return optax.apply_updates(W, u), s

    ks = jax.random.split(jax.random.PRNGKey(0), H + 1)
    W = {"in": jax.random.normal(ks[0], (D, N)), "h": jax.random.normal(ks[1], (H - 1, N, N)),
         "out": jax.random.normal(ks[H], (N, C))}
    return step, (W, opt.init(W))


def pcjax_step(depth: int, T: int, *, reuse_sweep: bool):
    """pcjax's ePC ``train_step`` for ``experiment=mnist_resmlp<depth>_epc_se`` over the state's arrays,
    the arrays, and the runtime's fusion setting."""
    import equinox as eqx

    import pcjax as pj
    from pcjax.experiment import build, to_dict

    overrides = [f"experiment=mnist_resmlp{depth}_epc_se", f"algorithm.T={T}"]
    if reuse_sweep:
        overrides.append("+algorithm.params.reuse_sweep=true")
    c = to_dict(pj.load_config(None, overrides=overrides))
    model, algo = build(c, 100, (28, 28, 1), 10)
    arrays, static = eqx.partition(algo.init(model), eqx.is_array)

    def step(a, x, y):
        state, metrics = algo.train_step(eqx.combine(a, static), x, y)
        return eqx.filter(state, eqx.is_array), metrics

    return step, (arrays,), algo.runtime.xla_fusion


def measure(depth: int = 32, T: int = 32, batch: int = 64, rounds: int = 15) -> dict:
    """Compile every case, then time ``rounds`` rounds of one step per case."""
    load_before = loadavg()
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(batch) % 10, 10)
    cases = {}
    s_step, s_args = script_step(depth, T)
    p_step, p_args, trainer_fusion = pcjax_step(depth, T, reuse_sweep=False)
    r_step, r_args, _ = pcjax_step(depth, T, reuse_sweep=True)
    plan = [("script, fusion on (as the script runs)", s_step, s_args, (x.reshape(batch, -1), y), True),
            ("script, fusion off", s_step, s_args, (x.reshape(batch, -1), y), False),
            (f"pcjax, fusion {'on' if trainer_fusion else 'off'} (as the trainer runs it)", p_step, p_args, (x, y),
             trainer_fusion),
            (f"pcjax, fusion {'off' if trainer_fusion else 'on'}", p_step, p_args, (x, y), not trainer_fusion),
            ("pcjax reuse_sweep, fusion off", r_step, r_args, (x, y), False),
            ("pcjax reuse_sweep, fusion on", r_step, r_args, (x, y), True)]
    for name, fn, args, data, fusion in plan:
        t0 = time.perf_counter()
        compiled = jax.jit(fn, compiler_options=None if fusion else FUSION_OFF).lower(*args, *data).compile()
        jax.block_until_ready(compiled(*args, *data))  # warm-up
        cases[name] = {"call": (compiled, args + data), "compile_s": time.perf_counter() - t0, "ms": []}
    for _ in range(rounds):
        for case in cases.values():
            compiled, args = case["call"]
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            case["ms"].append(1e3 * (time.perf_counter() - t0))
    ref = cases[plan[0][0]]["ms"]
    rows = [{"case": name, "median_ms": statistics.median(c["ms"]), "min_ms": min(c["ms"]),
             "compile_s": c["compile_s"],
             "ratio_to_script": statistics.median(a / b for a, b in zip(c["ms"], ref))} for name, c in cases.items()]
    return {"workload": f"ePC step, muPC residual MLP depth {depth}, width 128, T={T}, batch {batch}",
            **device_info(), "jax": jax.__version__, "rounds": rounds, "load_before": load_before,
            "load_after": loadavg(), "rows": rows}


def markdown(result: dict, command: str) -> str:
    """The results table."""
    lines = ["# ePC training step: pcjax against the plain-JAX calibration script (CPU)\n",
             "Written by `benchmarks/epc_step.py` (its docstring lists the cases). `script` is the step of "
             "`../shared/tools/calibrate_deep_pc.py`, its functions restated in the benchmark (nudged target, "
             "beta 0.1, Adam 0.03); `pcjax` is `train_step` of `experiment=mnist_resmlp<depth>_epc_se` "
             "(state and metrics returned). `reuse_sweep` (`algorithm.params.reuse_sweep=true`, "
             "`EPC(..., reuse_sweep=True)`, `Errors(reuse_sweep=True)`) makes the energy take the sweep's own "
             "predictions: per inference step a plain L-node MLP then runs 2L - 1 matrix products instead of "
             "4L - 4 (the default predicts every mu_l a second time and differentiates both copies), and the "
             "step equals the default's up to float rounding (`tests/test_epc.py`). It is off by default "
             "because that rounding changes the pinned golden outputs.\n",
             "The machine's other jobs shared its cores while this ran: compare cases within the table (every "
             "round times each case once, the ratio column pairs each case with the script in the same round), "
             "not with tables measured at another load.\n",
             f"{result['workload']}; {result['device_name']}, JAX {result['jax']}; {result['rounds']} rounds, "
             f"each case once per round. Load average (/proc/loadavg, 1/5/15 min) {result['load_before']} before, "
             f"{result['load_after']} after.\n",
             f"Command: `{command}`\n",
             "| case | median ms/step | fastest ms/step | compile s | median ratio to the script (fused), same round |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['case']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['compile_s']:.1f} | "
                     f"{r['ratio_to_script']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--md", default=None, help="write the table to this markdown file")
    args = p.parse_args(argv)
    result = measure(args.depth, args.T, args.batch, args.rounds)
    command = "python -m benchmarks.epc_step " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown(result, command.strip())
    print(table)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(table)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
