"""How a convnet's PC step runs inside compiled loops on XLA:CPU (why ``loop``/``unroll`` = auto).

    python -m benchmarks.cpu_loops [--width 0.5] [--T 8] [--batch 128] [--repeats 3] [--json FILE]

Times one PC-SE training step of the MNIST convnet (``mnist_cnn``) four ways, in one process:

  step_plain     the jitted step, inference under ``lax.scan`` (``unroll=1``, no error front)
  step_unroll    the jitted step, inference unrolled (``unroll=True``)
  step_auto      unrolled inference + error front (what ``algorithm.unroll/error_front=auto`` pick)
  epoch_scan     ``step_plain`` inside a ``lax.scan`` over K batches that carries the training state,
                 as the ``trainer.loop=scan`` epoch does (time per step)

Timed like ``benchmarks.speed`` (``time_runners``: a compile call, a warm-up call, then ``--repeats``
interleaved rounds; the median is reported). ``--json`` appends to a results file in
``benchmarks.speed``'s format (hardware named). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import jax
import jax.numpy as jnp

from .speed import Runner, _median, append_json, device_info, time_runners


def measure(width: float = 0.5, T: int = 8, batch: int = 128, repeats: int = 3, K: int = 4) -> dict:
    """Seconds per PC step of ``mnist_cnn`` (width multiplier ``width``) for the four variants."""
    import pcjax as pj

    model = pj.build_model("mnist_cnn", (28, 28, 1), 10, key=jax.random.PRNGKey(0), width_multiplier=width)
    base = pj.PCConfig(T=T, latent=pj.LatentOptim(lr=0.05, momentum=0.5))
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))
    y = jax.nn.one_hot(jnp.arange(batch) % 10, 10)
    out = {"workload": f"mnist_cnn x{width}", "T": T, "batch": batch, **device_info(), "jax": jax.__version__}
    runners = []
    for name, kw in (("step_plain", {}), ("step_unroll", dict(unroll=True)),
                     ("step_auto", dict(unroll=True, error_front=True))):
        algo = pj.PC(base, pj.WeightOptim(lr=1e-3), 100, runtime=pj.Runtime(**kw))
        state, step = algo.init(model), algo.jax_jit_train_step
        runners.append(Runner(name, lambda step=step, state=state: jax.block_until_ready(step(state, x, y))))
    algo = pj.PC(base, pj.WeightOptim(lr=1e-3), 100)
    state = algo.init(model)
    xs, ys = jnp.stack([x] * K), jnp.stack([y] * K)

    @jax.jit
    def epoch(st):
        return jax.lax.scan(lambda s, xy: (algo.train_step(s, *xy)[0], None), st, (xs, ys))[0]

    runners.append(Runner("epoch_scan", lambda: jax.block_until_ready(epoch(state))))
    time_runners(runners, repeats, log=lambda *_: None)
    for r in runners:
        if r.error:
            raise RuntimeError(f"{r.name}: {r.error}")
        out[r.name + "_s"] = _median(r.times)
    out["epoch_scan_s"] /= K
    out["scan_over_step"] = out["epoch_scan_s"] / out["step_plain_s"]
    out["plain_over_auto"] = out["step_plain_s"] / out["step_auto_s"]
    out["load_avg"] = round(os.getloadavg()[0], 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="append the result to this results file (benchmarks.speed format)")
    args = p.parse_args(argv)
    result = measure(args.width, args.T, args.batch, args.repeats)
    if args.json:
        append_json(args.json, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
