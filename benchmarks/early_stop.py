"""Inference that stops when it has converged: what it saves per epoch and what it costs in accuracy.

    python -m benchmarks.early_stop [--epochs 5] [--json benchmarks/results/cpu-2core-early_stop.json]

Trains the MNIST MLP (784-128x3-10) with the tuned PC-SE and ePC configs
(``conf/experiment/mnist_mlp_{pc,epc}_se``), each with fixed T and with ``Inference(tol=...)``
(relative energy change, ``tol_on="energy"``; for ePC at T=20 also the largest RMS update of the
errors, ``tol_on="update"``), side by side: every variant starts from the same
weights, sees the same batches (``fit``'s per-epoch permutation of the 90 % training split) and
follows the tuned schedule (25 epochs) for ``--epochs`` epochs; the epochs are interleaved
round-robin across the variants so that load from other processes hits all of them alike. One
compiled ``lax.scan`` per epoch (as ``fit``'s scan loop; compiled ahead of time, compilation
excluded). Reported per variant: median seconds per epoch, the mean number of inference steps per
batch (``StepInfo.steps``), test accuracy after every epoch; per tolerance variant, the saving in
s/epoch and the accuracy difference against its fixed-T variant. ``tol=0`` never stops early and
measures the cost of the early-stopping loop itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import speed

# name, experiment, algorithm overrides, tolerance (None: fixed T), test, the fixed-T variant it is compared with
VARIANTS = (
    ("pc T=8", "mnist_mlp_pc_se", {}, None, None, None),
    ("pc T=8 tol=0", "mnist_mlp_pc_se", {}, 0.0, "energy", "pc T=8"),
    ("pc T=8 tol=1e-3", "mnist_mlp_pc_se", {}, 1e-3, "energy", "pc T=8"),
    ("epc T=8", "mnist_mlp_epc_se", {}, None, None, None),
    ("epc T=8 tol=1e-3", "mnist_mlp_epc_se", {}, 1e-3, "energy", "epc T=8"),
    ("epc T=20", "mnist_mlp_epc_se", {"T": 20}, None, None, None),
    ("epc T=20 tol=1e-3", "mnist_mlp_epc_se", {"T": 20}, 1e-3, "energy", "epc T=20"),
    ("epc T=20 update<5e-4", "mnist_mlp_epc_se", {"T": 20}, 5e-4, "update", "epc T=20"),
)

_STEPS: list = []  # the inference step counts of the step being traced (see CountingInference)


def counting_inference(inference, **changes):
    """``inference`` (an ``Inference``) with ``changes``, recording each relaxation's step count at
    trace time so that the training step traced around it can return it."""
    import dataclasses

    from pcjax.inference import Inference

    @dataclass(frozen=True)
    class CountingInference(Inference):
        def run(self, *args, T=None, **kwargs):
            import jax.numpy as jnp

            free, infos = super().run(*args, T=T, **kwargs)
            _STEPS.append(infos.steps if infos.steps is not None else jnp.asarray(self.T if T is None else T))
            return free, infos

    fields = {f.name: getattr(inference, f.name) for f in dataclasses.fields(Inference)}
    return CountingInference(**{**fields, **changes})


def build_variant(c: dict, data, overrides: dict, tol: float | None, tol_on: str, min_steps: int):
    from pcjax.experiment import build

    c = json.loads(json.dumps(c))
    c["algorithm"].update(overrides)
    t = c["trainer"]
    n_train = int(data.train_x.shape[0] * (1 - t["val_fraction"]))
    model, algo = build(c, max(n_train // t["batch_size"], 1), data.image_shape, data.num_classes)
    algo.inference = counting_inference(algo.inference, tol=tol, tol_on=tol_on, min_steps=min_steps)
    return model, algo


def make_epoch(algo, tx, ty, mean, std, num_classes):
    import equinox as eqx
    import jax

    from pcjax.data.pipeline import normalize

    def epoch(state, perm):
        def body(st, idx):
            x = normalize(tx[idx], mean, std)
            y = jax.nn.one_hot(ty[idx], num_classes)
            _STEPS.clear()
            st, m = algo.train_step(st, x, y)
            steps = _STEPS[0]
            _STEPS.clear()
            return st, (m["energy"], steps)

        return jax.lax.scan(body, state, perm)

    return eqx.filter_jit(epoch)


def make_eval(algo, ex, ey, mean, std, batch):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from pcjax.data.pipeline import eval_batches, normalize

    idx, mask = eval_batches(ex.shape[0], batch)
    idx, mask = jnp.asarray(idx), jnp.asarray(mask)

    def evaluate(state):
        def body(total, inp):
            i, m = inp
            out = algo.eval_step(state, normalize(ex[i], mean, std))
            return total + ((jnp.argmax(out, -1) == ey[i]) & m).sum(), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.int32), (idx, mask))
        return total / mask.sum()

    return eqx.filter_jit(evaluate)


def run(args, log=print) -> dict:
    import jax
    import jax.numpy as jnp

    from pcjax.data import split_validation
    from pcjax.data.pipeline import epoch_permutation

    from .time_to_accuracy import compose, load_task_data

    variants = [v for v in VARIANTS if not args.only or v[0] in args.only.split(";")]
    configs = {v[1]: compose(v[1]) for v in variants}
    c0 = next(iter(configs.values()))
    data = load_task_data(c0)
    t = c0["trainer"]
    train, _ = split_validation(data, t["val_fraction"], c0["seed"])
    n, B = train.train_x.shape[0], t["batch_size"]
    mean, std = jnp.asarray(data.mean, jnp.float32), jnp.asarray(data.std, jnp.float32)
    tx, ty = jnp.asarray(train.train_x), jnp.asarray(train.train_y)
    ex, ey = jnp.asarray(data.test_x), jnp.asarray(data.test_y)
    base_key = jax.random.PRNGKey(c0["seed"])
    perms = [epoch_permutation(jax.random.split(jax.random.fold_in(base_key, e))[0], n, B) for e in range(args.epochs)]

    runs = []
    for name, exp, overrides, tol, tol_on, base in variants:
        model, algo = build_variant(configs[exp], data, overrides, tol, tol_on or "energy", args.min_steps)
        state = algo.init(model)
        epoch_fn = make_epoch(algo, tx, ty, mean, std, data.num_classes)
        eval_fn = make_eval(algo, ex, ey, mean, std, t["eval_batch_size"])
        t0 = time.perf_counter()
        compiled = epoch_fn.lower(state, perms[0]).compile()
        eval_c = eval_fn.lower(state).compile()
        compile_s = time.perf_counter() - t0
        log(f"  {name}: compiled in {compile_s:.1f} s")
        runs.append(dict(name=name, experiment=exp, overrides=overrides, tol=tol, tol_on=tol_on, base=base,
                         T=algo.inference.T, state=state, epoch=compiled, eval=eval_c, compile_s=compile_s,
                         seconds=[], eval_seconds=[], steps=[], test_acc=[], energy=[]))
    for e in range(args.epochs):
        k = e % len(runs)
        for r in runs[k:] + runs[:k]:
            t0 = time.perf_counter()
            r["state"], (energy, steps) = r["epoch"](r["state"], perms[e])
            jax.block_until_ready(r["state"])
            r["seconds"].append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            r["test_acc"].append(float(r["eval"](r["state"])))
            r["eval_seconds"].append(time.perf_counter() - t1)
            r["steps"].append(float(np.mean(np.asarray(steps))))
            r["energy"].append(float(np.mean(np.asarray(energy))))
            log(f"  epoch {e + 1} {r['name']}: {r['seconds'][-1]:.2f} s, {r['steps'][-1]:.2f} steps/batch, "
                f"test {r['test_acc'][-1]:.4f}")
    out = {}
    for r in runs:
        out[r["name"]] = {
            "experiment": r["experiment"], "algorithm_overrides": r["overrides"], "T": r["T"], "tol": r["tol"],
            "tol_on": r["tol_on"],
            "min_steps": args.min_steps if r["tol"] is not None else None, "compile_s": r["compile_s"],
            "seconds_per_epoch": float(np.median(r["seconds"])), "seconds": r["seconds"],
            "eval_seconds": r["eval_seconds"], "mean_steps_per_epoch": r["steps"],
            "mean_steps": float(np.mean(r["steps"])), "test_acc": r["test_acc"], "final_test_acc": r["test_acc"][-1],
            "train_energy": r["energy"], "compared_with": r["base"],
        }
    for name, v in out.items():
        base = out.get(v["compared_with"]) if v["compared_with"] else None
        if base:
            v["saving_per_epoch"] = 1.0 - v["seconds_per_epoch"] / base["seconds_per_epoch"]
            v["steps_saved"] = 1.0 - v["mean_steps"] / base["mean_steps"]
            v["acc_change_points"] = 100.0 * (v["final_test_acc"] - base["final_test_acc"])
    info = speed.device_info()
    return {"workload": "mnist-mlp-early-stop", **info, "epochs": args.epochs, "batch_size": B,
            "train_examples": int(n), "variants": out,
            "hardware": {**info, "cores": speed.cpu_count(), "cpu_model": speed.cpu_model()},
            "versions": speed._versions(), "load_avg": os.getloadavg()[0],
            "command": "python -m benchmarks.early_stop " + " ".join(args.argv),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}


def markdown(result: dict) -> str:
    lines = [f"# Early-stopping inference on the MNIST MLP ({result['device_name']})", "",
             f"{result['epochs']} epochs of the tuned schedule, batch {result['batch_size']}; generated by "
             "`python -m benchmarks.early_stop` (see the JSON beside this file).", "",
             "| variant | s/epoch | steps/batch | test acc % after each epoch | saving vs fixed T | acc change (points) |",
             "|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        accs = ", ".join(f"{100 * a:.2f}" for a in v["test_acc"])
        saving = f"{100 * v['saving_per_epoch']:+.1f} %" if "saving_per_epoch" in v else ""
        acc = f"{v['acc_change_points']:+.2f}" if "acc_change_points" in v else ""
        lines.append(f"| {name} | {v['seconds_per_epoch']:.2f} | {v['mean_steps']:.2f} | {accs} | {saving} | {acc} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.early_stop", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--min-steps", type=int, default=0)
    p.add_argument("--only", default=None, help="semicolon-separated variant names")
    p.add_argument("--json", default=None, help="write the result to this file (and the markdown beside it)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    result = run(args, log)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=speed._jsonable) + "\n")
        path.with_suffix(".md").write_text(markdown(result))
    print(json.dumps({k: {m: v[m] for m in ("seconds_per_epoch", "mean_steps", "final_test_acc")}
                      for k, v in result["variants"].items()}), flush=True)
    return result


if __name__ == "__main__":
    main()
