"""One-command GPU suite: step times, bf16 vs f32, and a CIFAR-10 VGG-5 run in a time budget.

    python -m benchmarks.gpu_suite [--budget-s 480] [--out benchmarks/results]   # one H100/H200, <= 8 min
    python -m benchmarks.gpu_suite --smoke [--out DIR]                          # same code paths, CPU, < 1 min

Sections, in this order (each stops when its share of ``--budget-s`` is spent: the step times at half
of it, the bf16 runs after 15 %, the CIFAR-10 runs with the rest less a 5 % reserve; what did not
fit is listed under ``skipped``):

1. **Step times** (``benchmarks.speed``'s protocol: same weights and batch for every competitor,
   first call = compile, one warm-up, then interleaved timed calls, median): MLP 784-128x3-10
   (T=8), VGG-5 at T=7 and T=20, ResNet-18 (T=7), batch 128; competitors pcjax PC-SE, pcjax ePC,
   pcjax BP, the PyTorch eager reference (PC and BP, ``benchmarks/torch_reference.py``) and PCX
   (``benchmarks/pcx_adapter.py``) when installed; on VGG-5 at T=7 also pcjax PC and BP with
   ``Runtime(compute_dtype="bfloat16")``. pcjax runs its ``auto`` runtime policy
   (``pcjax.resolve_runtime``). Memory: the XLA buffer assignment of each compiled pcjax step
   (arguments + outputs + temporaries) and torch's ``max_memory_allocated`` per competitor; the
   device's peak over the whole process is recorded as well.
2. **bf16 vs f32 accuracy**: VGG-5 PC-SE (the tuned ``cifar10_vgg5_pc_se`` values) trained with
   ``pcjax.training.fit`` for ``--bf16-epochs`` epochs in float32 and with bf16 compute, same seed
   and batches; test accuracy and s/epoch.
3. **CIFAR-10 VGG-5 PC-SE and BP** (``cifar10_vgg5_pc_se`` / ``cifar10_vgg5_bp_se`` values, their
   50-epoch schedule) with ``fit`` for as many epochs as fit in the remaining budget (half each);
   test accuracy after every epoch, s/epoch, compile seconds.

CIFAR-10 is read from ``$PCJAX_DATA_DIR`` (``cifar10/cifar-10-batches-py``); without it the suite
uses the synthetic data set and says so (``data: synthetic``). ``--smoke`` runs every section's
code on a CPU in under a minute: the step-time code with every kind of competitor, and the
training sections, on a tiny MLP and synthetic data (the convolutional rows run the same code). The suite imports
neither Hydra, OmegaConf nor wandb (the tuned values below restate the experiment configs; the test
``tests/test_bench_gpu_suite.py`` checks them against ``conf/experiment``). Results: JSON and
markdown, ``<out>/<device>-gpu_suite.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and torch share the GPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from . import speed  # noqa: E402

# The tuned CIFAR-10 VGG-5 values (conf/experiment/cifar10_vgg5_pc_se.yaml, cifar10_vgg5_bp_se.yaml)
VGG5_PC_SE = dict(T=7, latent_lr=0.0235, latent_momentum=0.3, lr=2.66e-4, weight_decay=6.66e-3, batch_size=128,
                  epochs=50, act="gelu")
VGG5_BP_SE = dict(lr=2.79e-4, weight_decay=1.11e-4, batch_size=128, epochs=50, act="gelu")
EPC_LATENT = dict(lr=0.1, momentum=0.5)  # conf/algorithm/epc.yaml
SMOKE_MLP = dict(width=16, depth=2, act="gelu")  # --smoke: the network of every section
SMOKE_MLP_SHAPE = (8, 8, 1)


@dataclass(frozen=True)
class Case:
    """One step-time row: a workload at one T and batch size (``bf16``: also time bf16 variants)."""

    name: str
    workload: speed.Workload
    T: int
    batch: int
    bf16: bool = False
    only: tuple[str, ...] | None = None  # a subset of the competitors (None: all)


def cases(smoke: bool) -> list[Case]:
    if not smoke:
        return [Case("mlp", speed.workload("mlp"), 8, 128), Case("vgg5", speed.workload("vgg5"), 7, 128, bf16=True),
                Case("vgg5", speed.workload("vgg5"), 20, 128), Case("resnet18", speed.workload("resnet18"), 7, 128)]
    # every kind of competitor on a tiny MLP (the convolutional rows run the same code; on a CPU a
    # convolutional network's weight initialisation and steps alone take over 10 s to compile)
    mlp = speed.Workload("mlp", SMOKE_MLP_SHAPE, 10, dict(SMOKE_MLP), 0.05, 0.5, 1e-3, 0.0)
    return [Case("mlp", mlp, 2, 8, bf16=True)]


# ----------------------------------------------------------------------------------------- budget
@dataclass
class Budget:
    """Wall-clock budget of the suite: ``left()`` seconds overall, ``until(fraction)`` a section's end."""

    total_s: float
    t0: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def until(self, fraction: float) -> float:
        """Seconds left before ``fraction`` of the whole budget is spent."""
        return fraction * self.total_s - self.elapsed()


# ------------------------------------------------------------------------------------- step times
def _compiled_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries of a compiled step (XLA buffer assignment), minus aliases."""
    try:
        mem = compiled.memory_analysis()
        if mem is None:
            return None
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        return int(total - getattr(mem, "alias_size_in_bytes", 0))
    except Exception:  # noqa: BLE001 - memory analysis is best effort
        return None


def _pcjax_runner(name, algo, net, x, y):
    """A pcjax competitor: its first call compiles the step ahead of time (``jax.jit(...).lower().compile()``),
    once, so that the compiled executable also gives the step's memory."""
    import jax

    box = {"state": algo.init(net), "compiled": None}

    def step():
        if box["compiled"] is None:
            box["compiled"] = jax.jit(algo.train_step).lower(box["state"], x, y).compile()
        box["state"], metrics = box["compiled"](box["state"], x, y)
        jax.block_until_ready((box["state"], metrics))

    def memory():
        return None if box["compiled"] is None else _compiled_bytes(box["compiled"])

    return speed.Runner(name, step, memory)


def make_runners(case: Case, seed: int = 0) -> tuple[list, dict]:
    """Every competitor of a step-time row (pcjax PC/ePC/BP [+bf16], torch PC/BP, PCX PC)."""
    import jax
    import jax.numpy as jnp

    import pcjax as pj

    wl = case.workload
    net = pj.build_model(wl.model, wl.input_shape, wl.num_classes, key=jax.random.PRNGKey(seed), **wl.options)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (case.batch,) + wl.input_shape, jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(seed + 2), (case.batch,), 0, wl.num_classes),
                       wl.num_classes)
    total = 1000
    wopt = pj.WeightOptim(lr=wl.weight_lr, weight_decay=wl.weight_decay)
    rt = pj.resolve_runtime(net)
    notes = {"runtime": {"error_front": rt.error_front, "unroll": rt.unroll}, "parameters": int(
        sum(a.size for a in jax.tree_util.tree_leaves(net))), "num_nodes": net.num_nodes}
    pc_cfg = pj.PCConfig(T=case.T, latent=pj.LatentOptim(lr=wl.latent_lr, momentum=wl.latent_momentum))
    bf = pj.Runtime(error_front=rt.error_front, unroll=rt.unroll, compute_dtype="bfloat16")
    pcjax = {
        "pcjax_pc": lambda: pj.PC(pc_cfg, wopt, total, runtime=rt),
        "pcjax_epc": lambda: pj.EPC(pj.Inference(case.T, pj.LatentOptim(**EPC_LATENT)), pj.EnergySpec(), wopt, total,
                                    runtime=pj.Runtime(unroll=rt.unroll)),
        "pcjax_bp": lambda: pj.Backprop(wopt, total),
    }
    if case.bf16:
        pcjax["pcjax_pc_bf16"] = lambda: pj.PC(pc_cfg, wopt, total, runtime=bf)
        pcjax["pcjax_bp_bf16"] = lambda: pj.Backprop(wopt, total, runtime=pj.Runtime(compute_dtype="bfloat16"))
    want = set(case.only) if case.only else set(pcjax) | {"torch_pc", "torch_bp", "pcx_pc"}
    runners = [_pcjax_runner(name, make(), net, x, y) for name, make in pcjax.items() if name in want]
    if want & {"torch_pc", "torch_bp"}:
        made, why = speed.make_torch(net, x, y, wl, case.T, None, total)
        for name, step, memory in made or []:
            runners.append(speed.Runner(f"torch_{name}", step, memory))
        if why:
            notes["torch"] = why
    if "pcx_pc" in want:
        try:
            made, why = speed.make_pcx(net, x, y, wl, case.T, None, total)
        except NotImplementedError as err:
            made, why = None, f"not supported by the PCX adapter: {err}"
        for name, step, memory in made or []:
            runners.append(speed.Runner(f"pcx_{name}", step, lambda: None))
        if why:
            notes["pcx"] = why
    return runners, notes


def _torch_memory(runner) -> int | None:
    """Peak bytes torch allocates during one more step of ``runner`` (CUDA only)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    runner.step()
    return int(torch.cuda.max_memory_allocated())


def time_case(case: Case, repeats: int, seconds_left, log) -> dict:
    """First call, warm-up and ``repeats`` interleaved calls of every competitor of ``case``; competitors
    whose first call would start after the section's time is up are skipped."""
    t0 = time.perf_counter()
    runners, notes = make_runners(case)
    live, skipped = [], []
    for r in runners:
        if seconds_left() <= 0:
            skipped.append(r.name)
            continue
        try:
            t = time.perf_counter()
            r.step()
            r.first_call_s = time.perf_counter() - t
            r.step()
            live.append(r)
            log(f"  {case.name} T={case.T}: {r.name} first call {r.first_call_s:.2f} s")
        except Exception as err:  # noqa: BLE001 - a failing competitor is reported, not fatal
            r.error = f"{type(err).__name__}: {err}"
            log(f"  {case.name} T={case.T}: {r.name} FAILED {r.error}")
    for i in range(repeats):
        if seconds_left() <= 0 and i >= 3:
            break
        k = i % max(len(live), 1)
        for r in live[k:] + live[:k]:
            t = time.perf_counter()
            r.step()
            r.times.append(time.perf_counter() - t)
    row = {"workload": case.name, "T": case.T, "batch": case.batch, "options": dict(case.workload.options),
           "competitors": {}, "skipped": skipped, "notes": notes}
    for r in runners:
        if r.name in skipped:
            continue
        step = float(np.median(r.times)) if r.times and not r.error else None
        if r.name.startswith("torch_") and step is not None:
            mem = _torch_memory(r)
        else:
            try:
                mem = r.memory() if step is not None else None
            except Exception:  # noqa: BLE001
                mem = None
        row["competitors"][r.name] = {
            "step_s": step, "compile_s": None if step is None else max(r.first_call_s - step, 0.0),
            "mem_bytes": mem, "samples_s": [round(t, 6) for t in r.times], "error": r.error}
    c = row["competitors"]

    def s(n):
        return (c.get(n) or {}).get("step_s")

    row["ratios"] = {"pc_over_bp": speed._ratio(s("pcjax_pc"), s("pcjax_bp")),
                     "epc_over_bp": speed._ratio(s("pcjax_epc"), s("pcjax_bp")),
                     "pcjax_over_pcx": speed._ratio(s("pcjax_pc"), s("pcx_pc")),
                     "torch_over_pcjax": speed._ratio(s("torch_pc"), s("pcjax_pc")),
                     "pc_bf16_over_f32": speed._ratio(s("pcjax_pc_bf16"), s("pcjax_pc")),
                     "bp_bf16_over_f32": speed._ratio(s("pcjax_bp_bf16"), s("pcjax_bp"))}
    row["seconds"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------------ training runs
def cifar10(smoke: bool):
    """CIFAR-10 from the data root, else (or in smoke mode) the synthetic set; (dataset, source)."""
    from pcjax.data import load_dataset
    from pcjax.data.synthetic import load_synthetic

    if not smoke:
        try:
            return load_dataset("cifar10", download=False), "cifar10"
        except Exception as err:  # noqa: BLE001 - fall back to synthetic data, and say so
            print(f"CIFAR-10 not found ({type(err).__name__}: {err}); using synthetic data", file=sys.stderr)
            return load_synthetic(image_shape=(32, 32, 3), n_train=4096, n_test=1024), "synthetic"
    return load_synthetic(image_shape=SMOKE_MLP_SHAPE, n_train=96, n_test=32), "synthetic"


class Stop(Exception):
    """Raised by the budget tracker to end ``fit`` before the next epoch would overrun."""


class _BudgetTracker:
    def __init__(self, budget_s: float, name: str, printer):
        self.budget_s, self.name, self._say, self.entries = budget_s, name, printer, []
        self.t0 = time.perf_counter()

    def start(self, config, run_dir) -> None:
        pass

    def log(self, metrics, step):
        self.entries.append({"epoch": step, "test_acc": metrics["test_acc"], "seconds": metrics["seconds"],
                             "eval_seconds": metrics["eval_seconds"]})
        self._say(f"    {self.name} epoch {step}: test {metrics['test_acc']:.4f}, {metrics['seconds']:.2f} s")
        elapsed = time.perf_counter() - self.t0
        if elapsed + metrics["seconds"] + metrics["eval_seconds"] > self.budget_s:
            raise Stop

    def finish(self, summary=None) -> None:
        pass


def train_run(name: str, algo, model, data, *, epochs: int, batch: int, budget_s: float, augment: bool, log,
              eval_batch: int = 1000) -> dict:
    """``fit`` for at most ``epochs`` epochs, stopping before an epoch that would overrun ``budget_s``."""
    import tempfile

    from pcjax.data.pipeline import AugmentSpec
    from pcjax.training import TrainerConfig, fit

    tracker = _BudgetTracker(budget_s, name, log)
    aug = AugmentSpec(crop_padding=4, flip=True) if augment else AugmentSpec()
    with tempfile.TemporaryDirectory() as run_dir:
        tc = TrainerConfig(epochs=epochs, batch_size=batch, eval_batch_size=eval_batch, val_fraction=0.0, seed=0,
                           chunks_per_epoch=4, loop=algo.runtime.loop, augment=aug, progress=False, run_dir=run_dir,
                           checkpoint=False)
        status = "complete"
        try:
            fit(algo, model, data, tc, tracker=tracker, meta={"name": name})
        except Stop:
            status = "budget"
        record = json.loads((Path(run_dir) / "record.json").read_text())
    secs = [e["seconds"] for e in tracker.entries]
    return {"epochs": tracker.entries, "epochs_run": len(secs), "status": status,
            "compile_s": record["summary"].get("compile_seconds"),
            "seconds_per_epoch": float(np.median(secs[1:] if len(secs) > 1 else secs)) if secs else None,
            "final_test_acc": tracker.entries[-1]["test_acc"] if tracker.entries else None,
            "best_test_acc": max((e["test_acc"] for e in tracker.entries), default=None),
            "runtime": {k: getattr(algo.runtime, k) for k in ("error_front", "unroll", "loop", "compute_dtype")}}


def _net(data, smoke: bool, seed: int):
    """VGG-5 (full width) for the training sections; with --smoke the tiny MLP."""
    import jax

    import pcjax as pj

    if smoke:
        return pj.build_model("mlp", data.image_shape, data.num_classes, key=jax.random.PRNGKey(seed), **SMOKE_MLP)
    return pj.build_model("vgg5", data.image_shape, data.num_classes, key=jax.random.PRNGKey(seed),
                          act=VGG5_PC_SE["act"])


def vgg5_pc(data, epochs_schedule: int, *, dtype=None, smoke=False, seed=0):
    import pcjax as pj

    v = VGG5_PC_SE
    net = _net(data, smoke, seed)
    batch = 16 if smoke else v["batch_size"]
    steps = (data.train_x.shape[0] // batch) * epochs_schedule
    algo = pj.PC(pj.PCConfig(T=1 if smoke else v["T"], latent=pj.LatentOptim(lr=v["latent_lr"], momentum=v["latent_momentum"])),
                 pj.WeightOptim(lr=v["lr"], weight_decay=v["weight_decay"]), steps,
                 runtime=pj.resolve_runtime(net, compute_dtype=dtype))
    return net, algo, batch


def vgg5_bp(data, epochs_schedule: int, *, smoke=False, seed=0):
    import pcjax as pj

    v = VGG5_BP_SE
    net = _net(data, smoke, seed)
    batch = 16 if smoke else v["batch_size"]
    steps = (data.train_x.shape[0] // batch) * epochs_schedule
    algo = pj.Backprop(pj.WeightOptim(lr=v["lr"], weight_decay=v["weight_decay"]), steps, runtime=pj.resolve_runtime(net))
    return net, algo, batch


# ------------------------------------------------------------------------------------------ report
def _ms(v):
    return "–" if v is None else f"{1000 * v:.2f}"


def _mib(v):
    return "–" if v is None else (f"{v / 2**20:.0f}" if v >= 10 * 2**20 else f"{v / 2**20:.2f}")


def _x(v, spec="{:.2f}"):
    return "–" if v is None else spec.format(v)


def markdown(res: dict) -> str:
    names = ("pcjax_pc", "pcjax_epc", "pcjax_bp", "pcjax_pc_bf16", "pcjax_bp_bf16", "torch_pc", "torch_bp", "pcx_pc")
    lines = [f"# GPU suite ({res['device_name']}{', smoke' if res['smoke'] else ''})", "",
             f"Generated by `{res['command']}` ({res['timestamp']}); {res['elapsed_s']:.0f} s of a "
             f"{res['budget_s']:.0f} s budget. Data: {res['data']}.", "",
             "## Step time (ms, median) and memory (MiB: XLA buffers of the compiled pcjax step; torch peak)", "",
             "| workload | T | batch | " + " | ".join(names) + " | PC/BP | pcjax/PCX |",
             "|---|---|---|" + "---|" * len(names) + "---|---|"]
    for row in res["step_times"]:
        c = row["competitors"]
        cells = [f"{_ms((c.get(n) or {}).get('step_s'))} ({_mib((c.get(n) or {}).get('mem_bytes'))})" if n in c else "–"
                 for n in names]
        r = row["ratios"]
        lines.append(f"| {row['workload']} | {row['T']} | {row['batch']} | " + " | ".join(cells) +
                     f" | {_x(r['pc_over_bp'])} | {_x(r['pcjax_over_pcx'])} |")
    skipped = [f"{row['workload']} T={row['T']}: {', '.join(row['skipped'])}" for row in res["step_times"] if row["skipped"]]
    skipped += res.get("skipped", [])
    lines += ["", "Compile seconds (first call minus the median step): " + "; ".join(
        f"{row['workload']} T={row['T']}: " + ", ".join(f"{n} {v['compile_s']:.1f}" for n, v in row["competitors"].items()
                                                   if v.get("compile_s") is not None) for row in res["step_times"]), ""]
    if res.get("bf16"):
        lines += [f"## bf16 vs f32 ({res['train_model']} PC-SE)", "", "| compute | epochs | s/epoch | test acc % |", "|---|---|---|---|"]
        for k, v in res["bf16"].items():
            acc = None if v["final_test_acc"] is None else 100 * v["final_test_acc"]
            lines.append(f"| {k} | {v['epochs_run']} | {_x(v['seconds_per_epoch'])} | {_x(acc)} |")
        lines.append("")
    if res.get("cifar"):
        lines += [f"## {res['data']} {res['train_model']} in the time budget", "",
                  "| algorithm | epochs | s/epoch | compile s | test acc % after each epoch |", "|---|---|---|---|---|"]
        for k, v in res["cifar"].items():
            accs = ", ".join(f"{100 * e['test_acc']:.1f}" for e in v["epochs"])
            lines.append(f"| {k} | {v['epochs_run']} | {v['seconds_per_epoch'] or 0:.2f} | {v['compile_s'] or 0:.1f} | {accs} |")
        lines.append("")
    if skipped:
        lines += ["Skipped (time budget): " + "; ".join(skipped), ""]
    return "\n".join(lines)


def run(args, log=print) -> dict:
    import jax

    info = speed.device_info()
    budget = Budget(args.budget_s)
    res = {"suite": "gpu_suite", "smoke": args.smoke, **info, "budget_s": args.budget_s,
           "hardware": {**info, "cores": speed.cpu_count(), "cpu_model": speed.cpu_model()},
           "versions": speed._versions(), "step_times": [], "skipped": []}
    repeats = 2 if args.smoke else args.repeats
    log(f"gpu_suite on {info['device_name']} ({'smoke, ' if args.smoke else ''}budget {args.budget_s:.0f} s)")
    # 1. step times: until 50 % of the budget
    for case in cases(args.smoke):
        if budget.until(0.5) <= 0:
            res["skipped"].append(f"step times {case.name} T={case.T}")
            continue
        res["step_times"].append(time_case(case, repeats, lambda: budget.until(0.5), log))
    try:
        res["device_peak_bytes"] = int(jax.devices()[0].memory_stats()["peak_bytes_in_use"])
    except Exception:  # noqa: BLE001 - CPU devices have no memory stats
        res["device_peak_bytes"] = None
    data, source = cifar10(args.smoke)
    res["data"] = source
    res["train_model"] = "MLP (smoke)" if args.smoke else "VGG-5"
    schedule = 1 if args.smoke else VGG5_PC_SE["epochs"]
    reserve = 0.05 * args.budget_s
    # 2. bf16 vs f32 accuracy: 15 % of the budget, less if the step times ran over (the CIFAR-10 runs keep 20 %)
    res["bf16"] = {}
    share = min(0.15 * args.budget_s, budget.left() - 0.2 * args.budget_s - reserve)
    t_section = time.perf_counter()
    for dtype in (None, "bfloat16"):
        key = dtype or "float32"
        left = share - (time.perf_counter() - t_section)
        if left <= 0:
            res["skipped"].append(f"bf16 accuracy run ({key})")
            continue
        net, algo, batch = vgg5_pc(data, args.bf16_epochs, dtype=dtype, smoke=args.smoke)
        log(f"  bf16 vs f32: {res['train_model']} PC-SE in {key}")
        res["bf16"][key] = train_run(f"pc_{key}", algo, net, data, epochs=args.bf16_epochs, batch=batch,
                                     budget_s=left / (2 if dtype is None else 1), augment=True, log=log)
    # 3. CIFAR-10 VGG-5 PC-SE and BP: the rest of the budget (less a 5 % reserve), half each
    res["cifar"] = {}
    for name in ("pc_se", "bp_se"):
        left = budget.left() - reserve
        if left <= 0:
            res["skipped"].append(f"{source} {res['train_model']} {name}")
            continue
        share = left / 2 if name == "pc_se" else left
        net, algo, batch = (vgg5_pc(data, schedule, smoke=args.smoke) if name == "pc_se"
                            else vgg5_bp(data, schedule, smoke=args.smoke))
        log(f"  {source} {res['train_model']} {name}: {share:.0f} s")
        res["cifar"][name] = train_run(name, algo, net, data, epochs=1 if args.smoke else schedule, batch=batch,
                                       budget_s=share, augment=True, log=log)
    res["elapsed_s"] = budget.elapsed()
    res["load_avg"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    res["command"] = "python -m benchmarks.gpu_suite " + " ".join(args.argv)
    res["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return res


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, synthetic data: the same code paths on a CPU")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 480; smoke 120)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per competitor")
    p.add_argument("--bf16-epochs", type=int, default=2, help="epochs of the bf16 vs f32 accuracy runs")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results; smoke: none)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.budget_s is None:
        args.budget_s = 120.0 if args.smoke else 480.0
    if args.smoke:
        args.bf16_epochs = 1
    if args.out is None and not args.smoke:
        args.out = str(Path(__file__).resolve().parent / "results")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    res = run(args, log)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{res['device']}-gpu_suite{'-smoke' if args.smoke else ''}"
        (out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=speed._jsonable) + "\n")
        (out / f"{stem}.md").write_text(markdown(res))
        log(f"wrote {out / stem}.json and .md")
    print(json.dumps({"device": res["device"], "elapsed_s": res["elapsed_s"], "skipped": res["skipped"],
                      "step_times": {f"{r['workload']}@T={r['T']}": {n: v["step_s"] for n, v in r["competitors"].items()}
                                     for r in res["step_times"]}}, default=speed._jsonable), flush=True)
    return res


if __name__ == "__main__":
    main()
