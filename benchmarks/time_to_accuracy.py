"""Time to accuracy: wall-clock seconds and epochs until a target test accuracy.

    python -m benchmarks.time_to_accuracy --task mnist_mlp --task fashion_mnist_mlp \\
        [--max-epochs N] [--only pcjax_pc,pcjax_epc,pcjax_bp,pcx_pc] [--json FILE] [--md FILE]
    python -m benchmarks.time_to_accuracy --report FILE.json      # regenerate the markdown table

Tasks (their tuned configs in ``conf/experiment/``, composed with Hydra as ``experiments/train.py``
does):

  mnist_mlp          MNIST, MLP 784-128x3-10 (gelu), target 98.0 %: mnist_mlp_{pc_se,epc_se,bp_se}
  fashion_mnist_mlp  Fashion-MNIST, the same MLP, target 89.0 %: fashion_mnist_mlp_{pc_se,epc_se,bp_se}
  cifar10_vgg5q      CIFAR-10, quarter-width VGG-5, the first 10,000 training images:
                     cifar10_vgg5q10k_{pc_se,bp_se}, ePC with the PC row's weight optimiser and ePC's
                     defaults; the target is the test accuracy BP reaches after 3 epochs (BP runs first)

Competitors, one after another in one process on the same machine:

  pcjax_pc / pcjax_epc / pcjax_bp   ``pcjax.training.fit`` with the task's tuned config (its epoch loop,
                                    runtime policy and compiled evaluation)
  pcjax_pc_fast                     ``fit`` with the task's fast PC recipe (``*_mlp_pc_fast``: fewer
                                    inference steps, larger latent and weight rates, a schedule of a
                                    few epochs, chosen on the validation split); it runs at most its
                                    config's epochs, which its schedule spans
  pcx_pc                            PCX's own training loop (``benchmarks.pcx_train``) with PCX's tuned
                                    config, which the *_pc_se row restates (T, latent SGD rate and
                                    momentum, AdamW rate, weight decay and schedule, batch size)

Protocol: every competitor starts from the same initial weights (the config's seed; PCX gets them
copied), trains on the same 90 % training split with the same per-epoch batch order and
augmentation keys (``fit``'s, drawn from the seed), and is evaluated on the whole test set after
every epoch; it stops at the first epoch whose test accuracy reaches the target, or after
``--max-epochs`` (default: the config's epochs; the learning-rate schedule spans that many epochs).
With ``--repeats N`` every competitor runs N times, the order reversed every other time, and the
reported seconds are the medians (the epochs to the target do not change: same seed, same batches).
Compilation is timed apart (``fit``'s ``compile_seconds``; PCX: the first step and evaluation minus
their second calls) and excluded; for the MLP tasks a one-epoch warm-up ``fit``
first compiles the eager operations of fit's epoch loop, which ``compile_seconds`` does not cover
(the PCX loop warms its own likewise). ``seconds_to_target`` sums the training time of
the epochs up to the target (evaluation excluded; ``wall_seconds_to_target`` includes it).
The 1-minute load average before and after each competitor is recorded (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import speed

ROOT = Path(__file__).resolve().parents[1]
COMPETITORS = ("pcjax_pc", "pcjax_pc_fast", "pcjax_epc", "pcjax_bp", "pcx_pc")
PC_FAMILY = ("pcjax_pc", "pcjax_pc_fast", "pcjax_epc")

TASKS = {
    "mnist_mlp": dict(target=0.98, configs=dict(pc="mnist_mlp_pc_se", pc_fast="mnist_mlp_pc_fast",
                                                epc="mnist_mlp_epc_se", bp="mnist_mlp_bp_se"),
                      label="MNIST MLP 784-128x3-10", warmup=True),
    "fashion_mnist_mlp": dict(target=0.89, configs=dict(pc="fashion_mnist_mlp_pc_se", pc_fast="fashion_mnist_mlp_pc_fast",
                                                        epc="fashion_mnist_mlp_epc_se", bp="fashion_mnist_mlp_bp_se"),
                              label="Fashion-MNIST MLP 784-128x3-10", warmup=True),
    "cifar10_vgg5q": dict(target=None, bp_epochs=3, max_epochs=10,
                          configs=dict(pc="cifar10_vgg5q10k_pc_se", epc=None, bp="cifar10_vgg5q10k_bp_se"),
                          label="CIFAR-10 VGG-5 (quarter width), 10,000 training images"),
}


# ------------------------------------------------------------------------------------------ configs
def compose(experiment: str | None, overrides: Sequence[str] = ()) -> dict:
    """The resolved config dict of ``experiment=NAME`` (as ``experiments/train.py`` composes it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pcjax.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    args = ([f"experiment={experiment}"] if experiment else []) + list(overrides)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return OmegaConf.to_container(hydra_compose("config", overrides=args), resolve=True)


def task_configs(task: str) -> dict[str, dict]:
    """Config dict per pcjax algorithm (``pc``, ``epc``, ``bp``) of a task: an experiment name, or a
    list of command-line overrides."""
    spec = TASKS[task]["configs"]
    out = {k: compose(v) if isinstance(v, str) else compose(None, v) for k, v in spec.items() if v}
    if "epc" not in out:  # ePC from the PC row: its weight optimiser, ePC's own inference defaults
        c = json.loads(json.dumps(out["pc"]))
        c["algorithm"] = compose(None, ["algorithm=epc"])["algorithm"]
        c["name"] = c["name"].replace("_pc_se", "_epc_se")
        out["epc"] = c
    return out


def load_task_data(c: dict):
    from pcjax.data import load_dataset

    d = c["dataset"]
    return load_dataset(d["name"], d["root"], download=False, limit_train=d["limit_train"], limit_test=d["limit_test"])


# ------------------------------------------------------------------------------------------ runners
class TargetReached(Exception):
    """Raised by the tracker to end ``fit`` at the epoch whose test accuracy meets the target."""


class _Tracker:
    """``fit``'s tracker: keeps every epoch's entry and ends the run once the target is met."""

    def __init__(self, target: float | None, name: str, printer):
        self.target, self.name, self.printer, self.entries = target, name, printer, []

    def start(self, config, run_dir) -> None:
        pass

    def log(self, metrics: dict, step: int) -> None:
        self.entries.append({"epoch": step, "test_acc": metrics["test_acc"], "seconds": metrics["seconds"],
                             "eval_seconds": metrics["eval_seconds"]})
        self.printer(f"    {self.name} epoch {step}: test {metrics['test_acc']:.4f}, {metrics['seconds']:.2f} s "
                     f"(+{metrics['eval_seconds']:.2f} s eval)")
        if self.target is not None and metrics["test_acc"] >= self.target:
            raise TargetReached

    def finish(self, summary=None) -> None:
        pass


def run_pcjax(c: dict, data, *, max_epochs: int, schedule_epochs: int, target: float | None, name: str,
              log, warmup: bool = False) -> dict:
    """``fit`` with config ``c`` until ``target`` or ``max_epochs``; the per-epoch log and compile time.

    ``warmup``: first a one-epoch ``fit`` of the same config, so that the small eager operations of
    fit's epoch loop (permutation, key folding, slicing, metric concatenation: about 1.4 s of
    compilation on the 2-core CPU, which fit's ``compile_seconds`` does not cover and its first
    epoch would otherwise carry) are compiled before the timed run; its first epoch is kept as
    ``cold_epoch1_seconds``.
    """
    cold = None
    if warmup:
        cold = run_pcjax(c, data, max_epochs=1, schedule_epochs=schedule_epochs, target=None, name=name + " (warm-up)",
                         log=log)["epochs"][0]["seconds"]
    from pcjax.data.pipeline import AugmentSpec
    from pcjax.experiment import beta_schedule, build
    from pcjax.training import TrainerConfig, fit

    c = json.loads(json.dumps(c))
    c["trainer"]["epochs"] = schedule_epochs
    t = c["trainer"]
    n_train = int(data.train_x.shape[0] * (1 - t["val_fraction"]))
    model, algo = build(c, max(n_train // t["batch_size"], 1), data.image_shape, data.num_classes)
    aug = c["dataset"]["augment"]
    tracker = _Tracker(target, name, log)
    with tempfile.TemporaryDirectory() as run_dir:
        tc = TrainerConfig(epochs=max_epochs, batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
                           val_fraction=t["val_fraction"], seed=c["seed"], chunks_per_epoch=t["chunks_per_epoch"],
                           loop=algo.runtime.loop, augment=AugmentSpec(aug["crop_padding"], aug["flip"], aug["crop_size"]),
                           progress=False, run_dir=run_dir, checkpoint=False,
                           beta_schedule=beta_schedule(c["algorithm"], c["seed"]) if c["algorithm"]["name"] != "bp" else None)
        try:
            fit(algo, model, data, tc, tracker=tracker, meta={"name": name})
        except TargetReached:
            pass
        record = json.loads((Path(run_dir) / "record.json").read_text())
    return {"config": c.get("name"), "epochs": tracker.entries, "compile_s": record["summary"].get("compile_seconds"),
            "cold_epoch1_seconds": cold, "loop": algo.runtime.loop,
            "runtime": {k: getattr(algo.runtime, k) for k in ("error_front", "unroll", "loop", "compute_dtype")}}


def run_pcx(c: dict, data, *, max_epochs: int, schedule_epochs: int, target: float | None, log,
            reduce: str = "psum") -> dict:
    """PCX's loop with the PC-SE row's hyper-parameters (which restate PCX's tuned config)."""
    from pcjax.data.pipeline import AugmentSpec
    from pcjax.experiment import build_model_from_config, energy_spec
    from pcjax.optim import WeightOptim

    from . import pcx_train

    a, t, aug = c["algorithm"], c["trainer"], c["dataset"]["augment"]
    net = build_model_from_config(c, data.image_shape, data.num_classes, energy_spec(c))
    if a["beta_schedule"] != "constant":
        raise NotImplementedError("the PCX loop keeps beta constant")
    res = pcx_train.train_pcx(
        net, data, T=a["T"], latent_lr=a["latent"]["lr"], latent_momentum=a["latent"]["momentum"],
        weight_optim=WeightOptim(**dict(c["optim"])), epochs=max_epochs, total_epochs=schedule_epochs,
        batch_size=t["batch_size"], seed=c["seed"], val_fraction=t["val_fraction"],
        chunks_per_epoch=t["chunks_per_epoch"], augment_spec=AugmentSpec(aug["crop_padding"], aug["flip"], aug["crop_size"]),
        eval_batch_size=t["eval_batch_size"], target=target, reduce=reduce, beta=float(a["beta"]), log=log)
    return {"config": c.get("name") + " (PCX loop)", "reduce": reduce, "compile_s": res.compile_s,
            "epochs": [{"epoch": e.epoch, "test_acc": e.test_acc, "seconds": e.seconds, "eval_seconds": e.eval_seconds}
                       for e in res.epochs]}


def summarise(entry: dict, target: float | None) -> dict:
    """Epochs and seconds to the target (None if not reached), best accuracy, mean s/epoch."""
    epochs = entry["epochs"]
    hit = next((i for i, e in enumerate(epochs) if target is not None and e["test_acc"] >= target), None)
    secs = [e["seconds"] for e in epochs]
    out = dict(entry)
    out.update(
        reached=hit is not None,
        epochs_to_target=None if hit is None else hit + 1,
        seconds_to_target=None if hit is None else float(sum(secs[:hit + 1])),
        seconds_with_compile=None if hit is None or entry.get("compile_s") is None
        else float(sum(secs[:hit + 1]) + entry["compile_s"]),
        wall_seconds_to_target=None if hit is None else float(sum(e["seconds"] + e["eval_seconds"] for e in epochs[:hit + 1])),
        best_test_acc=max((e["test_acc"] for e in epochs), default=None),
        epochs_run=len(epochs),
        seconds_per_epoch=float(np.mean(secs)) if secs else None,
    )
    return out


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def combine(runs: list[dict]) -> dict:
    """One competitor's repetitions: the first run's record, seconds (to target, per epoch) the medians
    over the repetitions (every repetition's numbers are kept under ``repeats``)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    out["repeats"] = [{k: r.get(k) for k in ("epochs_to_target", "seconds_to_target", "seconds_with_compile",
                                              "wall_seconds_to_target",
                                              "seconds_per_epoch", "compile_s", "load_before", "load_after")}
                      for r in ok]
    out["epochs_agree"] = len({r["epochs_to_target"] for r in ok}) == 1
    for key in ("seconds_to_target", "seconds_with_compile", "wall_seconds_to_target", "seconds_per_epoch", "compile_s"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[key] = float(np.median(vals)) if vals and len(vals) == len(ok) else out.get(key)
    out["load_before"] = min(r["load_before"] for r in ok)
    out["load_after"] = max(r["load_after"] for r in ok)
    return out


def run_task(task: str, *, only: Sequence[str] = COMPETITORS, max_epochs: int | None = None, pcx_reduce: str = "psum",
             repeats: int = 1, log=print) -> dict:
    """Every competitor of ``task`` to its target, ``repeats`` times (the order reversed every other time)."""
    spec = TASKS[task]
    cfgs = task_configs(task)
    data = load_task_data(cfgs["pc"])
    config_epochs = cfgs["pc"]["trainer"]["epochs"]
    max_epochs = max_epochs or spec.get("max_epochs") or config_epochs
    schedule_epochs = max(max_epochs, config_epochs)
    target = spec["target"]
    n_split = data.train_x.shape[0] - int(round(cfgs["pc"]["trainer"]["val_fraction"] * data.train_x.shape[0]))
    out: dict = {"label": spec["label"], "dataset": data.name, "train_examples": int(n_split),
                 "test_examples": int(data.test_x.shape[0]), "max_epochs": max_epochs,
                 "schedule_epochs": schedule_epochs, "batch_size": cfgs["pc"]["trainer"]["batch_size"],
                 "seed": cfgs["pc"]["seed"], "repeats": repeats, "competitors": {}}
    order = [n for n in COMPETITORS if n in only]
    runs: dict[str, list] = {}
    if target is None:  # the target is what BP reaches after bp_epochs epochs: BP runs first
        log(f"  {task}: BP for {spec['bp_epochs']} epochs sets the target")
        load0 = os.getloadavg()[0]
        bp = run_pcjax(cfgs["bp"], data, max_epochs=spec["bp_epochs"], schedule_epochs=schedule_epochs, target=None,
                       name="pcjax_bp", log=log)
        target = bp["epochs"][-1]["test_acc"]
        bp.update(load_before=load0, load_after=os.getloadavg()[0])
        runs["pcjax_bp"] = [summarise(bp, target)]
        out["target_rule"] = f"test accuracy of pcjax BP after {spec['bp_epochs']} epochs"
        order = [n for n in order if n != "pcjax_bp"]
    out["target_acc"] = target
    for rep in range(repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            log(f"  {task}: {name} (target {target:.4f}, at most {max_epochs} epochs, repetition {rep + 1})")
            load0 = os.getloadavg()[0]
            try:
                if name == "pcx_pc":
                    from . import pcx_adapter

                    if not pcx_adapter.available():
                        runs.setdefault(name, []).append({"error": "pcx is not installed"})
                        continue
                    res = run_pcx(cfgs["pc"], data, max_epochs=max_epochs, schedule_epochs=schedule_epochs,
                                  target=target, log=log, reduce=pcx_reduce)
                else:
                    kind = name.split("_", 1)[1]
                    if kind not in cfgs:
                        continue
                    own = cfgs[kind]["trainer"]["epochs"] if kind == "pc_fast" else None  # its schedule, its epochs
                    res = run_pcjax(cfgs[kind], data, max_epochs=min(max_epochs, own) if own else max_epochs,
                                    schedule_epochs=own or schedule_epochs, target=target, name=name, log=log,
                                    warmup=spec.get("warmup", False))
            except Exception as err:  # noqa: BLE001 - a failing competitor is reported, not fatal
                log(f"  {name}: FAILED {type(err).__name__}: {err}")
                runs.setdefault(name, []).append({"error": f"{type(err).__name__}: {err}"})
                continue
            res.update(load_before=load0, load_after=os.getloadavg()[0])
            runs.setdefault(name, []).append(summarise(res, target))
    out["competitors"] = {name: combine(runs[name]) for name in COMPETITORS if name in runs}
    comp = out["competitors"]

    def secs(n):
        return comp.get(n, {}).get("seconds_to_target")

    family = [(secs(n), n) for n in PC_FAMILY if secs(n) is not None]
    best = min(family) if family else (None, None)
    out["best_pcjax"] = best[1]
    out["ratio_best_pcjax_vs_pcx"] = _ratio(best[0], secs("pcx_pc"))
    with_compile = [(comp[n].get("seconds_with_compile"), n) for n in PC_FAMILY
                    if comp.get(n, {}).get("seconds_with_compile") is not None]
    pcx_compiled = comp.get("pcx_pc", {}).get("seconds_with_compile")
    out["ratio_best_pcjax_vs_pcx_with_compile"] = _ratio(min(with_compile)[0], pcx_compiled) if with_compile else None
    out["ratio_pc_vs_bp"] = _ratio(secs("pcjax_pc"), secs("pcjax_bp"))
    out["ratio_epc_vs_bp"] = _ratio(secs("pcjax_epc"), secs("pcjax_bp"))
    out["ratio_pcjax_pc_vs_pcx"] = _ratio(secs("pcjax_pc"), secs("pcx_pc"))
    return out


# ------------------------------------------------------------------------------------------ results
def merge_json(path: str | Path, task: str, result: dict, meta: dict) -> dict:
    """Write ``result`` as ``tasks[task]`` of the results file (other tasks kept), hardware named."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["hardware"] = meta["hardware"]
    data.setdefault("tasks", {})[task] = dict(result, versions=meta["versions"], command=meta["command"],
                                              timestamp=meta["timestamp"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=speed._jsonable) + "\n")
    tmp.replace(path)
    return data


def _fmt(v, spec="{:.1f}", none="–"):
    return none if v is None else spec.format(v)


def markdown(data: dict) -> str:
    """The time-to-accuracy table of a results file."""
    hw = data.get("hardware", {})
    lines = [f"# Time to accuracy ({hw.get('device_name', '?')})", "",
             "Generated by `python -m benchmarks.time_to_accuracy --report` from the JSON beside this file. "
             "Seconds: training time until the first epoch whose test accuracy reaches the target (compilation "
             "and per-epoch evaluation excluded; the evaluation time is in the JSON). Every competitor starts "
             "from the same weights and sees the same batches; PCX runs its own training loop "
             "(`benchmarks/pcx_train.py`) with its tuned config.", ""]
    for task, t in data.get("tasks", {}).items():
        target = t.get("target_acc")
        lines += [f"## {t.get('label', task)}: target {_fmt(None if target is None else 100 * target, '{:.2f}')} % test accuracy",
                  ""]
        if t.get("target_rule"):
            lines += [f"Target: {t['target_rule']}.", ""]
        lines += ["| competitor | config | epochs to target | seconds to target | with compilation | s/epoch | compile s | "
                  "best test acc % | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, c in t.get("competitors", {}).items():
            if "error" in c:
                lines.append(f"| {name} | – | failed: {c['error']} | | | | | | |")
                continue
            ept = c["epochs_to_target"] if c["reached"] else f"not in {c['epochs_run']}"
            load = f"{c.get('load_before', 0):.1f}–{c.get('load_after', 0):.1f}"
            lines.append(f"| {name} | {c.get('config', '')} | {ept} | {_fmt(c['seconds_to_target'])} | "
                         f"{_fmt(c.get('seconds_with_compile'))} | "
                         f"{_fmt(c['seconds_per_epoch'], '{:.2f}')} | {_fmt(c['compile_s'])} | "
                         f"{_fmt(None if c['best_test_acc'] is None else 100 * c['best_test_acc'], '{:.2f}')} | {load} |")
        lines += ["", f"best pcjax PC-family / PCX seconds: **{_fmt(t.get('ratio_best_pcjax_vs_pcx'), '{:.2f}')}** "
                      f"({t.get('best_pcjax') or '–'}; with compilation "
                      f"{_fmt(t.get('ratio_best_pcjax_vs_pcx_with_compile'), '{:.2f}')}); "
                      f"pcjax PC / pcjax BP: {_fmt(t.get('ratio_pc_vs_bp'), '{:.2f}')}; "
                      f"pcjax ePC / pcjax BP: {_fmt(t.get('ratio_epc_vs_bp'), '{:.2f}')}", "",
                  f"`{t.get('command', '')}` ({t.get('timestamp', '')})", ""]
    return "\n".join(lines)


def write_markdown(json_path: str | Path, md_path: str | Path | None = None) -> Path:
    json_path = Path(json_path)
    md_path = Path(md_path) if md_path else json_path.with_suffix(".md")
    md_path.write_text(markdown(json.loads(json_path.read_text())))
    return md_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", action="append", choices=sorted(TASKS), help="task (repeatable); default: the two MLPs")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(COMPETITORS)}")
    p.add_argument("--max-epochs", type=int, default=None, help="stop after this many epochs (default: the config's)")
    p.add_argument("--pcx-reduce", default="psum", choices=["psum", "pmean"],
                   help="batch reduction of PCX's energy (see benchmarks/pcx_train.py)")
    p.add_argument("--repeats", type=int, default=1, help="run every competitor this many times (the order reversed "
                   "every other time); seconds are the medians")
    p.add_argument("--json", default=None, help="write the results into this file (tasks merged)")
    p.add_argument("--md", default=None, help="markdown table (default: the JSON path with .md)")
    p.add_argument("--report", default=None, metavar="JSON", help="only regenerate the markdown of this results file")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report:
        print(write_markdown(args.report, args.md))
        return {}
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    info = speed.device_info()
    meta = {"hardware": {**info, "cores": speed.cpu_count(), "cpu_model": speed.cpu_model()},
            "versions": speed._versions(), "command": "python -m benchmarks.time_to_accuracy " + " ".join(args.argv),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    only = tuple(args.only.split(",")) if args.only else COMPETITORS
    results = {}
    for task in args.task or ["mnist_mlp", "fashion_mnist_mlp"]:
        log(f"{task} on {info['device_name']}")
        results[task] = run_task(task, only=only, max_epochs=args.max_epochs, pcx_reduce=args.pcx_reduce,
                                 repeats=args.repeats, log=log)
        if args.json:
            merge_json(args.json, task, results[task], meta)
            write_markdown(args.json, args.md)
    summary = {t: {k: r.get(k) for k in ("target_acc", "ratio_best_pcjax_vs_pcx", "ratio_pc_vs_bp")} |
               {n: c.get("seconds_to_target") for n, c in r["competitors"].items()} for t, r in results.items()}
    print(json.dumps(summary, default=speed._jsonable), flush=True)
    return results


if __name__ == "__main__":
    main()
