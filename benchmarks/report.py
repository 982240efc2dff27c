"""Markdown tables and plots from a speed-results file.

    python -m benchmarks.report benchmarks/results/cpu-2core.json [--out-dir benchmarks/results]

Writes ``<name>.md`` (hardware, every run with its exact command, the targets checked against the
runs that measure them) and PNG plots next to the JSON file: step time vs T, vs depth, vs batch,
and the PC/BP ratio. Runs are grouped by (workload, T, batch, dtype); where a configuration was run
more than once the latest run is used for the sweeps and targets (every run stays in the table).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

PEERS = ("pcjax_pc", "pcjax_bp", "torch_pc", "torch_bp", "pcx_pc")
LABELS = {"pcjax_pc": "pcjax PC", "pcjax_bp": "pcjax BP", "torch_pc": "PyTorch PC", "torch_bp": "PyTorch BP",
          "pcx_pc": "PCX PC"}


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def timing_runs(data: dict) -> list[dict]:
    """Single-configuration timing runs (not sweeps, not accuracy runs)."""
    return [r for r in data.get("runs", []) if "pcjax_pc_step_s" in r]


def sweep_runs(data: dict, name: str, **match) -> list[dict]:
    """Single-process sweeps over ``name`` (``--sweep``) whose fields equal ``match``."""
    return [r for r in data.get("runs", []) if r.get("sweep", {}).get("name") == name
            and all(r.get(k) == v for k, v in match.items())]


def _sweep_points(run: dict) -> dict:
    """{value: {competitor_step_s: ...}} from a sweep run, shaped like single runs for the plotting code."""
    sw = run["sweep"]
    pts = {}
    for i, v in enumerate(sw["values"]):
        pts[v] = {f"{p}_step_s": (sw[p]["step_s"][i] if p in sw else None) for p in PEERS}
        L = (run.get("num_nodes_per_value") or [None] * len(sw["values"]))[i]
        pts[v]["num_nodes"] = L
    # backprop is timed once in a T sweep: it does not depend on T
    if sw["name"] == "T":
        for p in ("pcjax_bp", "torch_bp"):
            first = next((pts[v][f"{p}_step_s"] for v in sw["values"] if pts[v][f"{p}_step_s"]), None)
            for v in pts:
                pts[v][f"{p}_step_s"] = first
    return pts


def latest(runs: list[dict], **match) -> dict | None:
    """The last run whose fields equal ``match`` (None if none)."""
    found = [r for r in runs if all(r.get(k) == v for k, v in match.items())]
    return found[-1] if found else None


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.3g}" if v < 1 else f"{v * 1e3:,.0f}"


def _x(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mb(v) -> str:
    return "-" if v is None else f"{v / 2**20:,.0f}"


def _depth(run: dict) -> int | None:
    m = re.fullmatch(r"resmlp-(\d+)", run["workload"])
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------- tables
def runs_table(runs: list[dict]) -> list[str]:
    head = ("| # | workload | T | batch | dtype | " + " | ".join(f"{LABELS[p]} ms" for p in PEERS)
            + " | PC/BP | PC/BP / T | pcjax/PCX | torch/pcjax | repeats | load |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['workload']} | {r['T']} | {r['batch']} | {r.get('dtype', 'f32')} | "
            + " | ".join(_ms(r.get(f"{p}_step_s")) for p in PEERS)
            + f" | {_x(r.get('pc_over_bp'))} | {_x(r.get('pc_over_bp_per_T'), 3)} | {_x(r.get('pcjax_over_pcx'))}"
            f" | {_x(r.get('torch_over_pcjax'))} | {r.get('repeats')} | {_x(r.get('load_avg'), 1)} |")
    return lines


def variants_table(runs: list[dict]) -> list[str]:
    rows = []
    for i, r in enumerate(runs, 1):
        for k, v in r.items():
            m = re.fullmatch(r"(pcjax_(?:pc|bp)_[a-z0-9_]+)_step_s", k)
            if m and m.group(1) not in PEERS and v is not None:
                base = "pcjax_pc" if k.startswith("pcjax_pc") else "pcjax_bp"
                rows.append(f"| {i} | {r['workload']} | {r['T']} | {r['batch']} | {m.group(1)} | {_ms(v)} | "
                            f"{_ms(r.get(f'{base}_step_s'))} | {_x(v / r[f'{base}_step_s'] if r.get(f'{base}_step_s') else None)} |")
    if not rows:
        return []
    return ["| # | workload | T | batch | variant | variant ms | default-run ms (" + "auto options) | variant / auto |",
            "|---|---|---|---|---|---|---|---|", *rows]


def compile_memory_table(runs: list[dict]) -> list[str]:
    head = ("| # | workload | T | batch | " + " | ".join(f"{LABELS[p]} first-call s" for p in PEERS)
            + " | pcjax PC MiB | pcjax BP MiB | peak RSS MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['workload']} | {r['T']} | {r['batch']} | "
            + " | ".join(_x(r.get(f"{p}_compile_s"), 1) for p in PEERS)
            + f" | {_mb(r.get('pcjax_pc_mem_bytes'))} | {_mb(r.get('pcjax_bp_mem_bytes'))} | {_mb(r.get('peak_rss_bytes'))} |")
    return lines


def sweep_tables(data: dict) -> list[str]:
    out = []
    all_runs = data.get("runs", [])
    for r in all_runs:
        if "sweep" not in r:
            continue
        sw = r["sweep"]
        comps = [p for p in PEERS if p in sw]
        out += [f"Run {all_runs.index(r) + 1}: `{r.get('command')}` (step time, ms; load {_x(r.get('load_avg'), 1)})", "",
                f"| {sw['name']} | " + " | ".join(LABELS[p] for p in comps) + " | pcjax PC/BP |",
                "|---|" + "---|" * (len(comps) + 1)]
        pts = _sweep_points(r)
        for v in sw["values"]:
            pc, bp = pts[v].get("pcjax_pc_step_s"), pts[v].get("pcjax_bp_step_s")
            out.append(f"| {v} | " + " | ".join(_ms(pts[v].get(f"{p}_step_s")) for p in comps)
                       + f" | {_x(pc / bp if pc and bp else None)} |")
        mem = sw.get("pcjax_pc", {}).get("mem_bytes")
        if mem and any(mem):
            out.append("")
            out.append("pcjax PC XLA buffer assignment (MiB): " + ", ".join(
                f"{sw['name']}={v}: {_mb(m)}" for v, m in zip(sw["values"], mem)))
        out.append("")
    return out


# ------------------------------------------------------------------------------------------ targets
def _linear_fit(xs, ys) -> tuple[float, float, float] | None:
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 3:
        return None
    a, b = np.polyfit(xs, ys, 1)
    pred = a * xs + b
    r2 = 1.0 - np.sum((ys - pred) ** 2) / max(np.sum((ys - ys.mean()) ** 2), 1e-30)
    return float(a), float(b), float(r2)


def t_sweep(runs, workload, batch, dtype="f32"):
    pts = {}
    for r in runs:
        if r["workload"] == workload and r["batch"] == batch and r.get("dtype", "f32") == dtype:
            pts[r["T"]] = r
    return dict(sorted(pts.items()))


def depth_sweep(runs, T=7, batch=128, dtype="f32"):
    pts = {}
    for r in runs:
        d = _depth(r)
        if d is not None and r["T"] == T and r["batch"] == batch and r.get("dtype", "f32") == dtype:
            pts[d] = r
    return dict(sorted(pts.items()))


def batch_sweep(runs, workload, T=7, dtype="f32"):
    pts = {}
    for r in runs:
        if r["workload"] == workload and r["T"] == T and r.get("dtype", "f32") == dtype:
            pts[r["batch"]] = r
    return dict(sorted(pts.items()))


def _batch_of(run: dict):
    """The batch of a sweep run that does not sweep the batch."""
    if run.get("batch") is not None:
        return run["batch"]
    m = re.search(r"--batch (\d+)", run.get("command", ""))
    return int(m.group(1)) if m else 128


def targets(data: dict) -> list[str]:
    runs = timing_runs(data)
    out = ["| target | run | measured | met |", "|---|---|---|---|"]

    def row(name, run, value, ok):
        idx = runs.index(run) + 1 if run in runs else "-"
        out.append(f"| {name} | {idx} | {value} | {'yes' if ok else ('no' if ok is not None else 'n/a')} |")

    for wl, batch, torch_min in (("vgg5", 32, 1.0), ("mlp", 128, 2.0)):
        r = (latest([x for x in runs if x.get("pcx_pc_step_s") and x.get("torch_pc_step_s")], workload=wl,
                    batch=batch, T=7, dtype="f32")
             or latest(runs, workload=wl, batch=batch, T=7, dtype="f32"))
        if r is None:
            row(f"{wl} b{batch}: measured", None, "no run", None)
            continue
        v = r.get("pcjax_over_pcx")
        row(f"{wl} b{batch} T=7: pcjax PC <= 0.67 x PCX PC", r, _x(v), None if v is None else v <= 0.67)
        v = r.get("torch_over_pcjax")
        row(f"{wl} b{batch} T=7: PyTorch PC / pcjax PC >= {torch_min:g}", r, _x(v), None if v is None else v >= torch_min)
        v = r.get("pc_over_bp")
        row(f"{wl} b{batch} T=7: pcjax PC / pcjax BP <= 0.45 T = {0.45 * 7:.2f}", r, _x(v), None if v is None else v <= 3.15)
    all_runs = data.get("runs", [])

    def srow(name, run, xs, ys, unit):
        fit = _linear_fit(xs, ys)
        if fit:
            out.append(f"| {name} | {all_runs.index(run) + 1} | slope {fit[0] * 1e3:.3g} ms/{unit}, intercept "
                       f"{fit[1] * 1e3:.3g} ms, R^2 = {fit[2]:.3f} | {'yes' if fit[2] >= 0.95 else 'no'} |")

    for wl, batch in (("mlp", 128), ("vgg5", 32)):
        sws = [r for r in sweep_runs(data, "T", workload=wl) if _batch_of(r) == batch]
        if sws:
            run = sws[-1]
            pts = _sweep_points(run)
            L = next((p["num_nodes"] for p in pts.values() if p["num_nodes"]), 0)
            xs = [t for t in pts if t >= L - 1 and pts[t]["pcjax_pc_step_s"]]
            srow(f"{wl} b{batch}: pcjax PC step linear in T, T >= L-1 = {L - 1} where every step is full "
                 f"(T = {', '.join(map(str, xs))}; one process)", run, xs, [pts[t]["pcjax_pc_step_s"] for t in xs],
                 "inference step")
        else:
            sw = t_sweep(runs, wl, batch)
            if len(sw) >= 3:
                srow(f"{wl} b{batch}: pcjax PC step linear in T (T = {', '.join(map(str, sw))}; separate runs)",
                     sw[max(sw)], list(sw), [r["pcjax_pc_step_s"] for r in sw.values()], "inference step")
    sws = [r for r in sweep_runs(data, "depth") if r["workload"].startswith("resmlp")]
    if sws:
        pts = _sweep_points(sws[-1])
        xs = [d for d in pts if pts[d]["pcjax_pc_step_s"]]
        srow(f"resmlp: pcjax PC step linear in depth (depth = {', '.join(map(str, xs))}; one process)", sws[-1], xs,
             [pts[d]["pcjax_pc_step_s"] for d in xs], "layer")
    else:
        dsw = depth_sweep(runs)
        if len(dsw) >= 3:
            srow(f"resmlp: pcjax PC step linear in depth (depth = {', '.join(map(str, dsw))}; separate runs)",
                 dsw[max(dsw)], list(dsw), [r["pcjax_pc_step_s"] for r in dsw.values()], "layer")
    r = latest(runs, workload="resmlp-128")
    if r is not None:
        mem = r.get("pcjax_pc_mem_bytes")
        row("resmlp-128 trains within memory", r, f"step {_ms(r['pcjax_pc_step_s'])} ms, "
            f"{_mb(mem)} MiB (XLA), peak RSS {_mb(r.get('peak_rss_bytes'))} MiB", r["pcjax_pc_step_s"] is not None)
    for r in runs:
        for k, v in r.items():
            if k.startswith("pcjax_pc_") and k.endswith("_bf16_over_pcjax_pc") and v is not None:
                row(f"{r['workload']} b{r['batch']}: bf16 compute / f32 step time", r, _x(v), None)
    for d in data.get("runs", []):
        if d.get("workload") == "digits-accuracy":
            out.append(f"| bf16 accuracy (digits, {len(d['runs']) // 2} seeds, {d['runs'][0]['epochs']} epochs) | - | "
                       f"f32 {d['f32_test_acc_mean']:.4f} +- {d['f32_test_acc_std']:.4f}, bf16 "
                       f"{d['bf16_test_acc_mean']:.4f} +- {d['bf16_test_acc_std']:.4f} | n/a |")
    return out


# -------------------------------------------------------------------------------------------- plots
def plots(data: dict, out_dir: Path, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = timing_runs(data)
    made = []

    def save(fig, name):
        path = out_dir / f"{stem}-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path.name)

    def lines(ax, sweep, xlabel):
        for p in PEERS:
            xs = [x for x, r in sweep.items() if r.get(f"{p}_step_s")]
            if xs:
                ax.plot(xs, [sweep[x][f"{p}_step_s"] * 1e3 for x in xs], "o-", label=LABELS[p])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("step time (ms, median)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def from_sweep(name, wl, batch=None):
        sws = [r for r in sweep_runs(data, name) if r["workload"].startswith(wl)
               and (batch is None or _batch_of(r) == batch)]
        return _sweep_points(sws[-1]) if sws else None

    sweeps_T = [(wl, b, from_sweep("T", wl, b) or t_sweep(runs, wl, b)) for wl, b in (("mlp", 128), ("vgg5", 32))]
    sweeps_T = [s for s in sweeps_T if len(s[2]) >= 2]
    if sweeps_T:
        fig, axes = plt.subplots(1, len(sweeps_T), figsize=(5.5 * len(sweeps_T), 4), squeeze=False)
        for ax, (wl, b, sw) in zip(axes[0], sweeps_T):
            lines(ax, sw, "T (inference steps)")
            ax.set_title(f"{wl}, batch {b}: step time vs T")
        save(fig, "vs-T")
    dsw = from_sweep("depth", "resmlp") or depth_sweep(runs)
    if len(dsw) >= 2:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        lines(ax, dsw, "depth (residual MLP, width 128)")
        ax.set_title("step time vs depth (T=7, batch 128)")
        save(fig, "vs-depth")
    sweeps_B = [(wl, from_sweep("batch", wl) or batch_sweep(runs, wl)) for wl in ("mlp", "vgg5")]
    sweeps_B = [s for s in sweeps_B if len(s[1]) >= 2]
    if sweeps_B:
        fig, axes = plt.subplots(1, len(sweeps_B), figsize=(5.5 * len(sweeps_B), 4), squeeze=False)
        for ax, (wl, sw) in zip(axes[0], sweeps_B):
            lines(ax, sw, "batch size")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{wl}: step time vs batch (T=7)")
        save(fig, "vs-batch")
    ratio = [r for r in runs if r.get("pc_over_bp") and r.get("dtype", "f32") == "f32"]
    if ratio:
        seen = {}
        for r in ratio:
            seen[(r["workload"], r["T"], r["batch"])] = r
        keys = sorted(seen, key=lambda k: (k[0], k[2], k[1]))
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(keys)), 4))
        vals = [seen[k]["pc_over_bp"] / k[1] for k in keys]
        ax.bar(range(len(keys)), vals, color="tab:blue")
        ax.axhline(0.45, color="tab:red", ls="--", label="target 0.45")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{w}\nT{t} b{b}" for w, t, b in keys], fontsize=7, rotation=60)
        ax.set_ylabel("(PC step / BP step) / T")
        ax.set_title("pcjax PC / BP step-time ratio per inference step")
        ax.legend()
        save(fig, "pc-over-bp")
    return made


# ------------------------------------------------------------------------------------------ markdown
def markdown(data: dict, path: Path, images: list[str]) -> str:
    hw = data.get("hardware", {})
    runs = timing_runs(data)
    first = runs[0] if runs else {}
    v = first.get("versions", {})
    md = [f"# Speed results: {hw.get('device', '?')}", "",
          f"Generated by `python -m benchmarks.report {path.as_posix()}` from `{path.name}`; see "
          "[the benchmarks README](../README.md) for the protocol.", "",
          f"* hardware: {hw.get('device_name', '?')}; CPU model string `{hw.get('cpu_model', '?')}`, "
          f"{hw.get('cores', '?')} cores (shared with other work while measuring: the `load` column is the "
          "1-minute load average at the end of each run)",
          f"* software: Python {v.get('python')}, JAX {v.get('jax')}, PyTorch {v.get('torch')} "
          f"({v.get('torch_threads')} threads, OMP_WAIT_POLICY=PASSIVE), PCX {v.get('pcx')}",
          "* step time = median of the timed calls (`repeats`) after a compile call and a warm-up call; all "
          "competitors of a run interleaved in one process", "",
          "## Targets", "", *targets(data), "",
          "## Step times (ms, median)", "", *runs_table(runs), ""]
    vt = variants_table(runs)
    if vt:
        md += ["## pcjax PC option variants (same run, interleaved)", "",
               "`plain` = `PCConfig` defaults (full steps under `lax.scan`); `unroll` = full steps, unrolled; "
               "`front` = error front with scanned full steps; `front_unroll` = error front, unrolled; "
               "`auto` (the `pcjax_pc` column) = error front, unrolled for convolutional networks; `_bf16` = "
               "`compute_dtype=\"bfloat16\"`.", "", *vt, ""]
    st = sweep_tables(data)
    if st:
        md += ["## Sweeps (one process per sweep, all values interleaved)", "", *st]
    md += ["## First call (compile) time and memory", "",
           "First-call seconds are the first call minus the median step (XLA compilation for JAX, eager warm-up "
           "for PyTorch). Memory: " + (first.get("mem_note") or ""), "", *compile_memory_table(runs), ""]
    if images:
        md += ["## Plots", ""] + [f"![{im}]({im})" for im in images] + [""]
    md += ["## Commands", ""]
    for i, r in enumerate(data.get("runs", []), 1):
        md.append(f"{i}. `{r.get('command', '?')}` ({r.get('timestamp', '')})")
    notes = [(i, r["notes"]) for i, r in enumerate(runs, 1) if r.get("notes")]
    if notes:
        md += ["", "## Notes", ""] + [f"* run {i}: {n}" for i, n in notes]
    return "\n".join(md) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report")
    p.add_argument("results", help="results JSON written by benchmarks.speed --json")
    p.add_argument("--out-dir", default=None, help="where the .md and .png files go (default: next to the JSON)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    path = Path(args.results)
    out_dir = Path(args.out_dir) if args.out_dir else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load(path)
    images = [] if args.no_plots else plots(data, out_dir, path.stem)
    md_path = out_dir / f"{path.stem}.md"
    md_path.write_text(markdown(data, path, images))
    print(md_path)


if __name__ == "__main__":
    main()
