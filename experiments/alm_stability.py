"""Is PC-ALM's relaxation stable at a run's weights? The spectral radius of its state-dual iteration at the saddle.

For each checkpoint of a PC-ALM run (``record.json`` and ``ckpt_*.pcjax`` in RUN_DIR), on a fixed batch of
its training images (the first ``--batch`` of its training split, prepared as training prepares them),
this finds the saddle of E_rho (r = 0, dE/dz = 0) by iterating the relaxation at a small state rate, then
reports rho(J_eta), the spectral radius of one (state step, dual step) at the saddle, for each state
rate eta (``pcjax.alm_stability``). rho > 1: the relaxation amplifies perturbations of the saddle
geometrically, so T steps from the feed-forward start can blow up.

Usage::

    python experiments/alm_stability.py results/probes/pcalm8e5_blowup/xlr0.25_2ep/seed0 \
        [--rates 0.1 0.25] [--batch 64] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SADDLE_TOL = 0.05  # max |r| and |dE/dz| at the point the radius is taken; ReLU kinks stall the search near 1e-3
SADDLE_RATE, SADDLE_STEPS = 0.1, 20000  # the saddle search: a state rate below every limit measured, and its steps


def alm_stability(run_dir: str | Path, rates: list[float], batch: int = 64, saddle_rate: float = SADDLE_RATE,
                  saddle_steps: int = SADDLE_STEPS, iters: int = 400) -> list[dict]:
    """One entry per checkpoint: ``{"epoch", "saddle_gap": [max|r|, max|dE/dz|], "radius": {eta: rho}}``."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from pcjax.algorithms.parameterisation import StatesAndDuals
    from pcjax.algorithms.pc import feedforward
    from pcjax.alm_stability import find_saddle, iteration_map, saddle_gap, spectral_radius
    from pcjax.checkpoint import CheckpointManager, load_checkpoint
    from pcjax.data import split_validation
    from pcjax.trained import load_run

    run = load_run(run_dir)
    algo = run.algorithm
    if not isinstance(getattr(getattr(algo, "config", None), "parameterisation", None), StatesAndDuals):
        raise SystemExit(f"error: {run_dir} is not a PC-ALM run (algorithm={run.config.get('algorithm')})")
    dual_lr = float(algo.config.parameterisation.dual_lr)
    train, _ = split_validation(run.data, run.trainer.val_fraction, run.trainer.seed)
    b = min(batch, train.train_x.shape[0])
    x = run.compiled.prep_eval(jnp.asarray(train.train_x[:b]))
    y = jax.nn.one_hot(jnp.asarray(train.train_y[:b]), run.data.num_classes)
    arrays, statics = eqx.partition(run.state, eqx.is_array)
    out = []
    for epoch, path in CheckpointManager(Path(run_dir)).checkpoints():
        state = eqx.combine(load_checkpoint(path, arrays)[0], statics)
        model = state.model
        problem = algo.problem(model, x, y, feedforward(model, x), state.beta)
        saddle = find_saddle(iteration_map(problem, model, x, saddle_rate, dual_lr), problem.init, saddle_steps)
        gap = saddle_gap(problem, model, x, saddle)
        radius = {eta: spectral_radius(iteration_map(problem, model, x, eta, dual_lr), saddle,
                                       jax.random.PRNGKey(0), iters) for eta in rates}
        out.append({"epoch": int(epoch), "saddle_gap": list(gap), "radius": radius})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a PC-ALM run directory holding record.json and its checkpoints")
    p.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                   help="state rates eta to test")
    p.add_argument("--batch", type=int, default=64, help="training images in the fixed batch")
    p.add_argument("--saddle-rate", type=float, default=SADDLE_RATE,
                   help="state rate of the saddle search (must be stable)")
    p.add_argument("--saddle-steps", type=int, default=SADDLE_STEPS)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    a = p.parse_args(argv)
    try:
        rows = alm_stability(a.run_dir, a.rates, a.batch, a.saddle_rate, a.saddle_steps)
    except FileNotFoundError as err:  # no record or no checkpoint: pcjax.trained.RunLoadError names which
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{a.run_dir}: spectral radius of PC-ALM's (state step, dual step) at the saddle, {a.batch} images")
    print("epoch  saddle max|r| max|dE/dz|  " + "  ".join(f"eta={e:<5g}" for e in a.rates))
    for r in rows:
        gap = r["saddle_gap"]
        print(f"{r['epoch']:5d}  {gap[0]:10.1e} {gap[1]:10.1e}  " +
              "  ".join(f"{r['radius'][e]:9.4f}" for e in a.rates))
    far = [r["epoch"] for r in rows if not max(r["saddle_gap"]) <= SADDLE_TOL]
    if far:
        print(f"warning: the saddle search did not reach the saddle at epoch(s) {far} (max |r| or |dE/dz| above "
              f"{SADDLE_TOL:g}): their radii are not the saddle's. Rerun with a smaller --saddle-rate (its radius "
              "must be below 1) or more --saddle-steps", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({"run_dir": str(a.run_dir), "batch": a.batch, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
