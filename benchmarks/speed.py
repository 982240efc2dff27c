"""Speed of one PC training step: pcjax vs backprop, a PyTorch eager reference and PCX.

    python -m benchmarks.speed --workload vgg5 --T 7 --batch 128 [--dtype bf16] [--json FILE] [--repeats N]

Every competitor trains the same network (weights copied from one pcjax model) on the same random
batch. Per competitor: the first call (compile / warm-up time), one more warm-up call, then
``--repeats`` timed calls, interleaved round-robin across the competitors in one process (the order
rotates every round) so that load from other processes hits all of them alike; the reported step
time is the median, each call ending with ``block_until_ready`` (JAX) or a synchronisation (torch on
CUDA). The last printed line is one JSON object (see ``RESULT_KEYS``).

Competitors:
  pcjax_pc    pcjax ``PC`` (PC-SE: T steps of SGD-momentum on the latents, then AdamW on the weights),
              with the speed options of ``--pcjax-opts`` (default ``auto``: ``error_front=True``, and
              ``unroll=True`` for convolutional networks)
  pcjax_bp    pcjax ``Backprop`` on the same model (same AdamW)
  torch_pc    the PyTorch eager reference of the same PC step (``benchmarks.torch_reference``)
  torch_bp    PyTorch eager backprop on the same network
  pcx_pc      PCX's PC step on the same network (``benchmarks.pcx_adapter``), when pcx is importable
  pcjax_pc_<preset>  (``--variants plain,unroll,...``) pcjax ``PC`` with other speed options, e.g.
              ``plain`` = its defaults (full steps under ``lax.scan``), for before/after comparisons

Memory: on GPU the device's ``peak_bytes_in_use`` after each JAX competitor's runs (process-wide,
so it includes what earlier competitors allocated; competitors run one after another for this
reason) and torch's ``max_memory_allocated``; on CPU the XLA buffer assignment of the compiled
step (arguments + outputs + temporaries, from ``compiled.memory_analysis()``) for the pcjax
competitors, ``None`` for torch and PCX, and the process' peak RSS (all competitors together).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# PyTorch's OpenMP threads spin-wait between parallel regions by default; on a CPU shared with XLA's
# thread pool (and other processes) that slows eager torch down 10-100x, so the reference gets
# the passive wait policy (set before torch is imported; an explicit setting is kept).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMPETITORS = ("pcjax_pc", "pcjax_bp", "torch_pc", "torch_bp", "pcx_pc")
RESULT_KEYS = (
    "workload", "T", "batch", "dtype", "device", "device_name",
    "pcjax_pc_step_s", "pcjax_bp_step_s", "torch_pc_step_s", "torch_bp_step_s", "pcx_pc_step_s",
    "pcjax_pc_compile_s", "pcjax_bp_compile_s", "torch_pc_compile_s", "torch_bp_compile_s", "pcx_pc_compile_s",
    "pcjax_pc_mem_bytes", "pcjax_bp_mem_bytes", "torch_pc_mem_bytes", "torch_bp_mem_bytes", "pcx_pc_mem_bytes",
    "peak_rss_bytes", "mem_note",
    "pc_over_bp", "pcjax_over_pcx", "torch_over_pcjax", "pc_over_bp_per_T",
)


# ------------------------------------------------------------------------------------ workloads
@dataclass(frozen=True)
class Workload:
    """A network and the PC hyper-parameters it is trained with (timing does not depend on them)."""

    model: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict = field(default_factory=dict)
    latent_lr: float = 0.02
    latent_momentum: float = 0.3
    weight_lr: float = 3e-4
    weight_decay: float = 1e-4


def workload(name: str, width: int | None = None, depth: int | None = None) -> Workload:
    """``mlp`` (784-128x3-10), ``vgg5``/``vgg7``/``resnet18`` (CIFAR 32x32x3), ``resmlp-N``
    (N-layer residual muPC MLP, width 128), ``tiny`` (a 6-16-16-3 MLP for tests)."""
    cifar = (32, 32, 3)
    if name == "mlp":
        w = Workload("mlp", (28, 28, 1), 10, dict(width=128, depth=3, act="gelu"), 0.0105, 0.65, 3e-4, 3.55e-4)
    elif name in ("vgg5", "vgg7"):
        w = Workload(name, cifar, 10, dict(act="gelu"), 0.0235, 0.3, 2.66e-4, 6.66e-3)
    elif name == "resnet18":
        w = Workload("resnet18", cifar, 10, dict(act="gelu"), 0.0235, 0.3, 2.66e-4, 1e-4)
    elif (m := re.fullmatch(r"resmlp-(\d+)", name)):
        w = Workload("mlp", (28, 28, 1), 10, dict(width=128, depth=int(m.group(1)), act="relu", residual=True,
                                                  init="mup"), 0.1, 0.0, 1e-3, 0.0)
    elif name == "tiny":
        w = Workload("mlp", (6,), 3, dict(width=16, depth=2, act="gelu"), 0.05, 0.5, 1e-3, 0.0)
    else:
        raise SystemExit(f"unknown workload {name!r}; valid: mlp, vgg5, vgg7, resnet18, resmlp-N, tiny")
    opts = dict(w.options)
    if width is not None:
        opts["width" if w.model == "mlp" else "width_multiplier"] = width if w.model == "mlp" else width / 100
    if depth is not None:
        if w.model != "mlp":
            raise SystemExit("--depth applies to the MLP workloads")
        opts["depth"] = depth
    return Workload(w.model, w.input_shape, w.num_classes, opts, w.latent_lr, w.latent_momentum, w.weight_lr,
                    w.weight_decay)


# ------------------------------------------------------------------------------------- hardware
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def device_info() -> dict:
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        n = cpu_count()
        return {"device": f"cpu-{n}core", "device_name": f"{cpu_model()} ({n} cores)", "platform": "cpu"}
    kind = getattr(dev, "device_kind", dev.platform)
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    return {"device": f"{dev.platform}-{slug}", "device_name": kind, "platform": dev.platform}


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


# ----------------------------------------------------------------------------------- competitors
@dataclass
class Runner:
    """One competitor: ``step()`` runs one training step and waits for it."""

    name: str
    step: Callable[[], None]
    memory: Callable[[], int | None] = lambda: None
    times: list = field(default_factory=list)
    first_call_s: float | None = None
    error: str | None = None


def _xla_bytes(jitted, *args) -> int | None:
    """Arguments + outputs + temporaries of the compiled step (XLA buffer assignment)."""
    try:
        compiled = jitted.lower(*args).compile()
        compiled = getattr(compiled, "compiled", compiled)  # equinox wraps jax's Compiled
        mem = compiled.memory_analysis()
        if mem is None:
            return None
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        return int(total - getattr(mem, "alias_size_in_bytes", 0))
    except Exception:  # noqa: BLE001 - memory analysis is best effort
        return None


PCJAX_OPTS = {
    "auto": None,  # error front; inference unrolled for convolutional networks (see pcjax_options)
    "front_unroll": dict(error_front=True, unroll=True),
    "front": dict(error_front=True),
    "unroll": dict(unroll=True),
    "plain": dict(),
}


def pcjax_options(preset: str, net) -> dict:
    """Runtime speed options of a preset. ``auto``: ``error_front=True`` always, ``unroll=True`` when the
    network has convolutions (on CPU, XLA runs convolution gradients inside a compiled loop several
    times slower than unrolled; for dense networks the scanned loop is as fast or faster)."""
    if PCJAX_OPTS[preset] is not None:
        return dict(PCJAX_OPTS[preset])
    from pcjax.blocks import Conv

    has_conv = any(isinstance(leaf, Conv) for leaf in
                   __import__("jax").tree_util.tree_leaves(net, is_leaf=lambda m: isinstance(m, Conv)))
    return dict(error_front=True, unroll=True) if has_conv else dict(error_front=True)


def make_pcjax(net, x, y, wl: Workload, T: int, dtype: str | None, opts: dict, total_steps: int,
               dispatch: str = "jax"):
    import jax

    import pcjax as pj

    wopt = pj.WeightOptim(lr=wl.weight_lr, weight_decay=wl.weight_decay)
    cfg = pj.PCConfig(T=T, latent=pj.LatentOptim(lr=wl.latent_lr, momentum=wl.latent_momentum),
                      energy=pj.EnergySpec())
    runtime = pj.Runtime(compute_dtype=dtype, **opts)
    runners = []
    for name, algo in (("pc", pj.PC(cfg, wopt, total_steps, runtime=runtime)),
                       ("bp", pj.Backprop(wopt, total_steps, runtime=pj.Runtime(compute_dtype=dtype)))):
        box = {"state": algo.init(net)}
        fn = algo.jax_jit_train_step if dispatch == "jax" else algo.jit_train_step

        def step(fn=fn, box=box):
            box["state"], metrics = fn(box["state"], x, y)
            jax.block_until_ready((box["state"], metrics))

        def memory(fn=fn, box=box):
            return _device_peak() if _platform() != "cpu" else _xla_bytes(fn, box["state"], x, y)

        runners.append((name, step, memory))
    return runners


def _platform() -> str:
    import jax

    return jax.devices()[0].platform


def _device_peak() -> int | None:
    import jax

    try:
        return int(jax.devices()[0].memory_stats()["peak_bytes_in_use"])
    except Exception:  # noqa: BLE001
        return None


def make_torch(net, x, y, wl: Workload, T: int, dtype: str | None, total_steps: int):
    try:
        from . import torch_reference as tr
    except Exception:  # noqa: BLE001
        return None, "torch is not installed"
    if not tr.available():
        return None, "torch is not installed"
    import torch

    import pcjax as pj

    cuda = _platform() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    wopt = pj.WeightOptim(lr=wl.weight_lr, weight_decay=wl.weight_decay)
    xt = tr.to_torch_node(x).to(device)
    yt = torch.from_numpy(np.array(y)).to(device)
    autocast = dtype is not None
    out = []
    for name in ("pc", "bp"):
        tnet = tr.TorchNet.from_pcjax(net).to(device)
        if name == "pc":
            trainer = tr.TorchPC(tnet, T=T, latent_lr=wl.latent_lr, latent_momentum=wl.latent_momentum,
                                 weight_optim=wopt, total_steps=total_steps)
        else:
            trainer = tr.TorchBP(tnet, weight_optim=wopt, total_steps=total_steps)

        def step(trainer=trainer):
            if autocast:
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    trainer.train_step(xt, yt)
            else:
                trainer.train_step(xt, yt)
            if cuda:
                torch.cuda.synchronize()

        def memory():
            return int(torch.cuda.max_memory_allocated()) if cuda else None

        out.append((name, step, memory))
    return out, None


def make_pcx(net, x, y, wl: Workload, T: int, dtype: str | None, total_steps: int):
    if dtype is not None:
        return None, "PCX has no mixed-precision compute option"
    try:
        from . import pcx_adapter as pa
    except Exception as err:  # noqa: BLE001
        return None, f"pcx adapter failed to import: {err}"
    if not pa.available():
        return None, "pcx is not installed"
    import jax

    import pcjax as pj

    wopt = pj.WeightOptim(lr=wl.weight_lr, weight_decay=wl.weight_decay)
    runner = pa.PCXRunner(net, T=T, latent_lr=wl.latent_lr, latent_momentum=wl.latent_momentum, weight_optim=wopt,
                          total_steps=total_steps, batch_size=x.shape[0])
    xp = runner.prepare(x)

    def step():
        jax.block_until_ready(runner.train_step(xp, y))

    def memory():
        return _device_peak() if _platform() != "cpu" else None

    return [("pc", step, memory)], None


# ---------------------------------------------------------------------------------------- timing
def time_runners(runners: Sequence[Runner], repeats: int, log=print) -> None:
    """First call, one more warm-up, then ``repeats`` interleaved rounds (rotating order)."""
    live = []
    for r in runners:
        try:
            t0 = time.perf_counter()
            r.step()
            r.first_call_s = time.perf_counter() - t0
            r.step()
            live.append(r)
            log(f"  {r.name}: first call {r.first_call_s:.3f} s")
        except Exception as err:  # noqa: BLE001 - a failing competitor is reported, not fatal
            r.error = f"{type(err).__name__}: {err}"
            log(f"  {r.name}: FAILED {r.error}")
    for i in range(repeats):
        k = i % max(len(live), 1)
        for r in live[k:] + live[:k]:
            t0 = time.perf_counter()
            r.step()
            r.times.append(time.perf_counter() - t0)


def _median(xs):
    return float(np.median(xs)) if xs else None


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


# ------------------------------------------------------------------------------------------- run
def build_runners(args: argparse.Namespace, suffix: str = "", log=print, skip: frozenset = frozenset()):
    """Every requested competitor for one configuration (``args``); names get ``suffix``."""
    import jax
    import jax.numpy as jnp

    import pcjax as pj

    wl = workload(args.workload, args.width, args.depth)
    dtype = None if args.dtype in (None, "f32", "float32") else args.dtype
    t0 = time.perf_counter()
    net = pj.build_model(wl.model, wl.input_shape, wl.num_classes, key=jax.random.PRNGKey(args.seed), **wl.options)
    x = jax.random.normal(jax.random.PRNGKey(args.seed + 1), (args.batch,) + wl.input_shape, jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(args.seed + 2), (args.batch,), 0, wl.num_classes),
                       wl.num_classes)
    log(f"  {args.workload}{suffix}: model built in {time.perf_counter() - t0:.1f} s: {net.num_nodes} latent nodes, "
        f"{sum(a.size for a in jax.tree_util.tree_leaves(net)):,} parameters")
    total_steps = 1000
    want = (set(args.only.split(",")) if args.only else set(COMPETITORS)) - set(skip)
    notes: dict[str, str] = {}
    runners: list[Runner] = []
    opts = pcjax_options(args.pcjax_opts, net)
    for name, step, memory in make_pcjax(net, x, y, wl, args.T, dtype, opts, total_steps, args.dispatch):
        if f"pcjax_{name}" in want:
            runners.append(Runner(f"pcjax_{name}{suffix}", step, memory))
    variants = [v for v in (args.variants.split(",") if args.variants else []) if v]
    for v in variants:
        preset, _, vdtype = v.partition(":")
        if preset not in PCJAX_OPTS or vdtype not in ("", "f32", "bf16"):
            raise SystemExit(f"unknown --variants entry {v!r}; valid: PRESET[:bf16|:f32], PRESET in "
                             f"{', '.join(sorted(PCJAX_OPTS))}")
        vd = dtype if not vdtype else (None if vdtype == "f32" else vdtype)
        made = make_pcjax(net, x, y, wl, args.T, vd, pcjax_options(preset, net), total_steps, args.dispatch)
        for name, step, memory in made if vdtype else made[:1]:
            runners.append(Runner(f"pcjax_{name}_{v.replace(':', '_')}{suffix}", step, memory))
    if want & {"torch_pc", "torch_bp"}:
        made, why = make_torch(net, x, y, wl, args.T, dtype, total_steps)
        for name, step, memory in made or []:
            if f"torch_{name}" in want:
                runners.append(Runner(f"torch_{name}{suffix}", step, memory))
        if why:
            notes["torch"] = why
    if "pcx_pc" in want:
        try:
            made, why = make_pcx(net, x, y, wl, args.T, dtype, total_steps)
        except NotImplementedError as err:
            made, why = None, f"not supported by the PCX adapter: {err}"
        for name, step, memory in made or []:
            runners.append(Runner(f"pcx_{name}{suffix}", step, memory))
        if why:
            notes["pcx"] = why
    return runners, notes, wl, opts, net.num_nodes


def _summary(runners: Sequence[Runner], notes: dict) -> dict:
    out = {}
    for r in runners:
        step = _median(r.times) if not r.error else None
        out[f"{r.name}_step_s"] = step
        out[f"{r.name}_compile_s"] = max(r.first_call_s - step, 0.0) if step is not None else None
        try:
            out[f"{r.name}_mem_bytes"] = r.memory() if not r.error else None
        except Exception:  # noqa: BLE001
            out[f"{r.name}_mem_bytes"] = None
        if r.error:
            notes[r.name] = r.error
    return out


def _mem_note(platform_name: str) -> str:
    if platform_name == "cpu":
        return ("CPU: *_mem_bytes = XLA buffer assignment of the compiled step (arguments + outputs + temporaries); "
                "None for torch/PCX; peak_rss_bytes = process peak RSS, all competitors together")
    return ("GPU: JAX *_mem_bytes = device peak_bytes_in_use after the competitor ran (process-wide, cumulative); "
            "torch = torch.cuda.max_memory_allocated")


SWEEPABLE = {"T": "T", "batch": "batch", "depth": "depth", "width": "width"}


def run(args: argparse.Namespace, log=print) -> dict:
    info = device_info()
    log(f"{args.workload}: T={args.T} batch={args.batch} dtype={args.dtype or 'f32'} on {info['device_name']}"
        + (f", sweep {args.sweep}" if args.sweep else ""))
    result: dict = {"workload": args.workload, "T": args.T, "batch": args.batch, "dtype": args.dtype or "f32",
                    "device": info["device"], "device_name": info["device_name"]}
    if args.sweep:
        return _run_sweep(args, info, result, log)
    runners, notes, wl, opts, L = build_runners(args, log=log)
    result["num_nodes"] = L
    time_runners(runners, args.repeats, log)
    summary = _summary(runners, notes)
    for name in COMPETITORS:
        for what in ("step_s", "compile_s", "mem_bytes"):
            result[f"{name}_{what}"] = summary.get(f"{name}_{what}")
    extra = [r.name for r in runners if r.name not in COMPETITORS]
    for name in extra:
        for what in ("step_s", "compile_s", "mem_bytes"):
            result[f"{name}_{what}"] = summary.get(f"{name}_{what}")
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["mem_note"] = _mem_note(info["platform"])
    pc, bp = result["pcjax_pc_step_s"], result["pcjax_bp_step_s"]
    result["pc_over_bp"] = _ratio(pc, bp)
    result["pc_over_bp_per_T"] = _ratio(result["pc_over_bp"], args.T) if args.T else None
    result["pcjax_over_pcx"] = _ratio(pc, result["pcx_pc_step_s"])
    result["torch_over_pcjax"] = _ratio(result["torch_pc_step_s"], pc)
    result["torch_bp_over_pcjax_bp"] = _ratio(result["torch_bp_step_s"], bp)
    for name in extra:
        base = "pcjax_pc" if name.startswith("pcjax_pc") else "pcjax_bp"
        result[f"{name}_over_{base}"] = _ratio(result[f"{name}_step_s"], result[f"{base}_step_s"])
    _finish(result, args, runners, notes, wl, opts)
    return result


def _run_sweep(args, info, result, log) -> dict:
    """All values of one parameter in one process, every competitor of every value interleaved."""
    name, _, values = args.sweep.partition("=")
    if name not in SWEEPABLE or not values:
        raise SystemExit(f"--sweep takes NAME=v1,v2,... with NAME in {', '.join(SWEEPABLE)}")
    values = [int(v) for v in values.split(",") if v]
    runners, notes = [], {}
    for i, v in enumerate(values):
        sub = argparse.Namespace(**vars(args))
        setattr(sub, SWEEPABLE[name], v)
        # backprop does not depend on T: time it once
        skip = frozenset({"pcjax_bp", "torch_bp"}) if name == "T" and i > 0 else frozenset()
        made, n, wl, opts, L = build_runners(sub, suffix=f"@{name}={v}", log=log, skip=skip)
        result.setdefault("num_nodes_per_value", []).append(L)
        runners += made
        notes.update(n)
    time_runners(runners, args.repeats, log)
    summary = _summary(runners, notes)
    table: dict = {}
    for r in runners:
        comp, _, _ = r.name.partition("@")
        table.setdefault(comp, {})
    for comp in table:
        table[comp] = {what: [summary.get(f"{comp}@{name}={v}_{what}") for v in values]
                       for what in ("step_s", "compile_s", "mem_bytes")}
    result["sweep"] = {"name": name, "values": values, **table}
    if name in ("T", "batch"):
        result[name] = None  # the swept values are in result["sweep"]
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["mem_note"] = _mem_note(info["platform"])
    _finish(result, args, runners, notes, wl, opts)
    return result


def _finish(result, args, runners, notes, wl, opts) -> None:
    result["repeats"] = args.repeats
    result["dispatch"] = args.dispatch
    result["pcjax_opts"] = {"preset": args.pcjax_opts, **{k: v for k, v in opts.items()}}
    result["options"] = {k: v for k, v in wl.options.items()}
    result["samples_s"] = {r.name: [round(t, 6) for t in r.times] for r in runners}
    result["notes"] = notes
    result["versions"] = _versions()
    result["load_avg"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    result["command"] = "python -m benchmarks.speed " + " ".join(args.argv)


def digits_accuracy(dtype: str | None, *, epochs: int = 30, seed: int = 0, T: int = 7, batch: int = 64,
                    log=print) -> dict:
    """Test accuracy of PC-SE (error front) on scikit-learn's 8x8 digits with the benchmark MLP
    (64-128x3-10, gelu), trained in float32 or with ``compute_dtype=dtype``; same seed, data order
    and hyper-parameters for every dtype."""
    import jax
    import jax.numpy as jnp

    import pcjax as pj
    from pcjax.data.digits import load_digits
    from pcjax.data.pipeline import normalize

    ds = load_digits()
    xtr, xte = normalize(ds.train_x, ds.mean, ds.std), normalize(ds.test_x, ds.mean, ds.std)
    ytr = jax.nn.one_hot(ds.train_y, 10)
    net = pj.build_model("mlp", ds.image_shape, 10, key=jax.random.PRNGKey(seed), width=128, depth=3, act="gelu")
    steps = epochs * (ds.num_train // batch)
    algo = pj.PC(pj.PCConfig(T=T, latent=pj.LatentOptim(lr=0.1, momentum=0.5)),
                 pj.WeightOptim(lr=1e-3, weight_decay=1e-4), steps,
                 runtime=pj.Runtime(error_front=True, compute_dtype=dtype))
    state = algo.init(net)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = rng.permutation(ds.num_train)
        for i in range(ds.num_train // batch):
            idx = perm[i * batch:(i + 1) * batch]
            state, metrics = algo.jit_train_step(state, xtr[idx], ytr[idx])
    out = algo.jit_eval_step(state, xte)
    acc = float(jnp.mean(jnp.argmax(out, -1) == ds.test_y))
    res = {"dtype": dtype or "f32", "seed": seed, "epochs": epochs, "T": T, "test_acc": acc,
           "final_energy": float(metrics["energy"]), "train_s": time.perf_counter() - t0}
    log(f"  digits {res['dtype']} seed {seed}: test accuracy {acc:.4f}")
    return res


def _versions() -> dict:
    import jax

    out = {"python": platform.python_version(), "jax": jax.__version__}
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        out["torch"] = None
    try:
        from . import pcx_adapter as pa

        out["pcx"] = pa.version()
    except Exception:  # noqa: BLE001
        out["pcx"] = None
    return out


def append_json(path: str | Path, result: dict) -> None:
    """Append ``result`` to the ``runs`` list of the results file (created with the hardware named)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("hardware", {"device": result["device"], "device_name": result["device_name"],
                                 "cores": cpu_count(), "cpu_model": cpu_model()})
    data.setdefault("runs", []).append(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="mlp", help="mlp | vgg5 | vgg7 | resnet18 | resmlp-N | tiny")
    p.add_argument("--T", type=int, default=7, help="inference steps")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default=None, choices=[None, "f32", "bf16"], help="compute dtype (bf16: bf16 "
                   "matmuls/convs, f32 latents and energies)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per competitor (median reported)")
    p.add_argument("--json", default=None, help="append the result to this results file")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(COMPETITORS)}")
    p.add_argument("--pcjax-opts", default="auto", choices=sorted(PCJAX_OPTS),
                   help="pcjax PC speed options (auto: error front, unrolled inference for convnets; plain: defaults)")
    p.add_argument("--variants", default="", help="also time pcjax PC with these option presets, comma-separated "
                   f"PRESET[:bf16|:f32] with PRESET in {', '.join(sorted(PCJAX_OPTS))}; a dtype suffix also "
                   "times pcjax BP in that dtype")
    p.add_argument("--width", type=int, default=None, help="MLP width (or VGG/ResNet width in percent)")
    p.add_argument("--depth", type=int, default=None, help="MLP depth (hidden layers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dispatch", default="jax", choices=["jax", "equinox"],
                   help="pcjax step wrapper: jax = PC.jax_jit_train_step (jax.jit), equinox = jit_train_step "
                   "(eqx.filter_jit); same compiled computation, different per-call overhead")
    p.add_argument("--sweep", default=None, metavar="NAME=V1,V2,...",
                   help="time every value of T, batch, depth or width in one process, all interleaved")
    p.add_argument("--digits", type=int, default=0, metavar="EPOCHS",
                   help="instead of timing: train the MLP on the 8x8 digits for EPOCHS epochs in float32 and "
                   "bf16 compute and report test accuracies")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the --digits accuracy run")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    if args.digits:
        runs = [digits_accuracy(d, epochs=args.digits, seed=s, T=args.T, log=log)
                for s in range(args.seeds) for d in (None, "bf16")]
        result = {"workload": "digits-accuracy", "T": args.T, **device_info(), "runs": runs}
        for d in ("f32", "bf16"):
            accs = [r["test_acc"] for r in runs if r["dtype"] == d]
            result[f"{d}_test_acc_mean"] = float(np.mean(accs))
            result[f"{d}_test_acc_std"] = float(np.std(accs))
        result["command"] = "python -m benchmarks.speed " + " ".join(args.argv)
        result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    else:
        result = run(args, log)
    if args.json:
        append_json(args.json, result)
    print(json.dumps(result, default=_jsonable), flush=True)
    return result


if __name__ == "__main__":
    main()
