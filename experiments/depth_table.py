#!/usr/bin/env python
"""The depth study's table and plot from its run records: test accuracy (strict protocol) per depth and
algorithm, the gap to backprop, and accuracy against depth.

    python experiments/depth_table.py results/runs --out results/deep_pc.md --plot results/plots/depth_mnist.png
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.collapse import find_collapse  # noqa: E402
from pcjax.reporting import load_records, replace_marked_block, strict_accuracy  # noqa: E402

ALGOS = {"pc_se": "PC", "pc_se_lalr": "PC + LALR", "epc_se": "ePC", "epcg_se": "ePC (nudged, guarded)",
         "bpc_skip_lalr": "bidir + skip + LALR",
         "pcalm_se": "PC-ALM", "pcalm15_se": "PC-ALM (rate 0.15)", "bp_se": "BP"}
# ``..._resmlp<depth>_...``: one epoch; ``..._resmlp<depth>e<N>_...``: the same row trained for N epochs
ROW = re.compile(r"^(?P<ds>mnist|fashion_mnist)_resmlp(?P<depth>\d+)(?:e(?P<ep>\d+))?_(?P<algo>" + "|".join(ALGOS)
                 + r")$")
TARGET_PT = 0.5  # best PC-family variant within 0.5 pt of BP at every depth and budget


#: the published PC-ALM port's setting (Fashion-MNIST, width 32, depth 32, one epoch, T = 2L) and its numbers
PORT = re.compile(r"^fashion_mnist_resmlp32w32_(?P<algo>bp_se|pc_se|pcalm_se)$")
PORT_PUBLISHED = {"bp_se": 78.66, "pc_se": 68.13, "pcalm_se": 77.75}

FAILED: dict = defaultdict(list)  # (dataset, depth, epochs, algo) -> statuses of runs that did not complete
COLLAPSED: dict = defaultdict(int)  # (dataset, depth, epochs, algo) -> complete runs with a finite blow-up


def collect(paths: list[str]) -> dict:
    """(dataset, depth, epochs, algo) -> list of (strict test acc %, s/epoch) over seeds (complete runs
    only); the other runs' statuses (diverged, failed, ...) go to ``FAILED``, and the complete runs whose
    validation accuracy fell 20 points or more below an earlier epoch's (``pcjax.collapse``) are counted
    in ``COLLAPSED``."""
    table: dict = defaultdict(list)
    for r in load_records(paths):
        m = ROW.match(r.name or "")
        if not m:
            continue
        key = (m["ds"], int(m["depth"]), int(m["ep"] or 1), m["algo"])
        if r.status != "complete":
            FAILED[key].append(r.status)
            continue
        acc, _ = strict_accuracy(r)
        secs = [e["seconds"] for e in r.epochs]
        table[key].append((100 * acc, sum(secs) / len(secs)))
        COLLAPSED[key] += find_collapse(r.epochs) is not None
    return table


def fmt(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def port_table(paths: list[str]) -> str:
    """The PC-ALM port's Fashion-MNIST 32 x 32 rows beside the published numbers (markdown; empty
    when none has run)."""
    runs: dict = defaultdict(list)
    for r in load_records(paths):
        m = PORT.match(r.name or "")
        if m and r.status == "complete":
            runs[m["algo"]].append(100 * strict_accuracy(r)[0])
    if not runs:
        return ""
    lines = ["", "PC-ALM port's setting (Fashion-MNIST, width 32, depth 32, ReLU, one epoch, T = 2L = 64):", "",
             "| algorithm | pcjax (strict) | published (port) | gap to BP, pcjax | gap to BP, published |",
             "|---|---|---|---|---|"]
    bp = statistics.mean(runs["bp_se"]) if runs.get("bp_se") else None
    for algo, label in (("bp_se", "BP"), ("pc_se", "PC"), ("pcalm_se", "PC-ALM")):
        vals = runs.get(algo, [])
        ours = f"{fmt(vals)} (n={len(vals)})" if vals else "not run"
        gap = f"{statistics.mean(vals) - bp:+.2f}" if vals and bp is not None else "–"
        lines.append(f"| {label} | {ours} | {PORT_PUBLISHED[algo]:.2f} | {gap} | "
                     f"{PORT_PUBLISHED[algo] - PORT_PUBLISHED['bp_se']:+.2f} |")
    return "\n".join(lines) + "\n"


def study_table(table: dict, epochs: int) -> list[str]:
    """Markdown rows of one budget: a column per algorithm with a run at that budget (every algorithm at
    one epoch), a row per dataset and depth, and the best PC-family gap to BP."""
    keys = [k for k in list(table) + list(FAILED) if k[2] == epochs]
    algos = [al for al in ALGOS if epochs == 1 or any(k[3] == al for k in keys)]
    lines = ["| dataset | depth | " + " | ".join(ALGOS[al] for al in algos) + " | best PC-family - BP |",
             "|---|---|" + "---|" * (len(algos) + 1)]
    for ds in ("mnist", "fashion_mnist"):
        for depth in sorted({d for (s, d, _, _) in keys if s == ds}):
            cells, means = [], {}
            for algo in algos:
                runs = table.get((ds, depth, epochs, algo), [])
                if runs:
                    means[algo] = statistics.mean(acc for acc, _ in runs)
                cells.append(cell_text(runs, FAILED.get((ds, depth, epochs, algo), []),
                                       COLLAPSED.get((ds, depth, epochs, algo), 0)))
            lines.append(f"| {ds} | {depth} | " + " | ".join(cells) + f" | {gap_text(means)} |")
    return lines


def target_table(table: dict) -> list[str]:
    """One row per (dataset, depth, epochs) with BP and at least one PC-family run: the best PC-family
    variant by mean accuracy, BP, the gap and whether it is within ``TARGET_PT``; a budget with BP
    alone is listed as not measured."""
    lines = ["| dataset | depth | epochs | best PC-family | BP | gap | met |", "|---|---|---|---|---|---|---|"]
    cells = sorted({k[:3] for k in table}, key=lambda k: (k[0] != "mnist", k[2], k[1]))
    for ds, depth, epochs in cells:
        runs = {al: [acc for acc, _ in v] for (s, d, ep, al), v in table.items() if (s, d, ep) == (ds, depth, epochs)}
        bp = runs.pop("bp_se", None)
        if not bp:
            continue
        if not runs:
            lines.append(f"| {ds} | {depth} | {epochs} | not run | {fmt(bp)} (n={len(bp)}) | – | not measured |")
            continue
        algo, accs = max(runs.items(), key=lambda kv: statistics.mean(kv[1]))
        gap = statistics.mean(accs) - statistics.mean(bp)
        lines.append(f"| {ds} | {depth} | {epochs} | {ALGOS[algo]} {fmt(accs)} (n={len(accs)}) | {fmt(bp)} (n={len(bp)}) "
                     f"| {gap:+.2f} | {'yes' if gap >= -TARGET_PT else 'no'} |")
    return lines


def study_arguments(doc: str, marker: str, plot_help: str, diag_help: str) -> argparse.ArgumentParser:
    """The command line every study-table script takes: run paths, the markdown file whose ``marker``
    block it rewrites, a plot and a diagnostics plot."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default=None, help=f"markdown file to update between the {marker} markers (default: print)")
    p.add_argument("--plot", default=None, help=plot_help)
    p.add_argument("--diag-plot", default=None, help=diag_help)
    return p


def cell_text(runs: list[tuple[float, float]], failed: list[str], collapsed: int = 0) -> str:
    """One table cell: mean ± std accuracy over the complete runs, their count, how many of them
    collapsed later, how many did not complete and why, and the mean seconds per epoch; the failures
    alone when none completed."""
    if runs:
        other = f", {collapsed} collapsed" if collapsed else ""
        other += f"; {len(failed)} {'/'.join(sorted(set(failed)))}" if failed else ""
        return (f"{fmt([acc for acc, _ in runs])} (n={len(runs)}{other}, "
                f"{statistics.mean(s for _, s in runs):.0f} s/ep)")
    return " / ".join(sorted(set(failed))) if failed else "not run"


def best_gap(means: dict[str, float]) -> float | None:
    """max over the PC-family algorithms of mean accuracy, minus the best backprop variant's (``bp_se``,
    ``bp_se_*``); None if either is missing."""
    pcf = [v for k, v in means.items() if not k.startswith("bp_se")]
    bp = [v for k, v in means.items() if k.startswith("bp_se")]
    return max(pcf) - max(bp) if pcf and bp else None


def gap_text(means: dict[str, float]) -> str:
    gap = best_gap(means)
    return "–" if gap is None else f"{gap:+.2f}"


def main(argv=None) -> int:
    a = study_arguments(__doc__, "depth-table", "PNG of accuracy against depth",
                        "PNG of the per-layer cosine with backprop and update norm (runs with "
                        "trainer.diagnostics=true, last epoch)").parse_args(argv)
    table = collect(a.runs)
    lines = []
    for epochs in sorted({ep for (_, _, ep, _) in list(table) + list(FAILED)}):
        if epochs != 1:
            lines += ["", f"The same rows trained for {epochs} epochs (`<dataset>_resmlp<depth>e{epochs}_<algorithm>`):", ""]
        lines += study_table(table, epochs)
    lines += ["", f"Target (best PC-family within {TARGET_PT} pt of BP; means over the seeds run, one seed where n=1):", "",
              *target_table(table)]
    text = "\n".join(lines) + "\n" + port_table(a.runs)
    print(text)
    if a.out:
        cmd = "python experiments/depth_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        replace_marked_block(a.out, "depth-table", cmd, text)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        dss = sorted({s for (s, _, _, _) in table})
        fig, axes = plt.subplots(1, len(dss), figsize=(5.5 * len(dss), 4), squeeze=False)
        for ax, ds in zip(axes[0], dss):
            colours = {}
            for epochs in sorted({ep for (_, _, ep, _) in table}):
                for algo, label in ALGOS.items():
                    pts = sorted((d, statistics.mean(acc for acc, _ in v)) for (s, d, ep, al), v in table.items()
                                 if s == ds and al == algo and ep == epochs)
                    if not pts:
                        continue
                    style = dict(color="k" if algo == "bp_se" else colours.get(algo), marker="o" if epochs == 1 else "s",
                                 ls=("--" if algo == "bp_se" else "-") if epochs == 1 else ":")
                    line, = ax.plot([d for d, _ in pts], [v for _, v in pts],
                                    label=label if epochs == 1 else f"{label}, {epochs} epochs", **style)
                    colours.setdefault(algo, line.get_color())
            ax.set_xscale("log", base=2)
            ax.set_xlabel("hidden layers")
            ax.set_ylabel("test accuracy % (strict)")
            ax.set_title(f"{ds}: muPC residual MLP, width 128")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.plot, dpi=120, bbox_inches="tight")
    if a.diag_plot:
        plot_diagnostics(a.runs, a.diag_plot)
    return 0


def plot_diagnostics(paths: list[str], out: str) -> None:
    """Per-block cos(update, BP gradient) (top row) and update norm / BP gradient norm (bottom row)
    against the relative block position l / L, one column per PC-family algorithm, one line per depth
    (colour) and dataset (solid: MNIST, dashed: Fashion-MNIST); seed-0 runs, last epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for r in load_records(paths):
        m = ROW.match(r.name or "")
        if (m and m["algo"] != "bp_se" and not m["ep"] and r.status == "complete" and r.seed == 0 and r.epochs
                and "diagnostics" in r.epochs[-1]):
            runs.append((m["algo"], m["ds"], int(m["depth"]), r.epochs[-1]["diagnostics"]))
    if not runs:
        return
    algos = [a for a in ALGOS if any(r[0] == a for r in runs)]
    depths = sorted({r[2] for r in runs})
    colour = {d: plt.cm.viridis(i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(2, len(algos), figsize=(4.2 * len(algos), 7), squeeze=False, sharex=True)
    for col, algo in enumerate(algos):
        top, bottom = axes[0][col], axes[1][col]
        for _, ds, depth, d in sorted((r for r in runs if r[0] == algo), key=lambda r: (r[1], r[2])):
            L = len(d["cosine_bp"])
            x = [(i + 1) / L for i in range(L)]
            style = dict(color=colour[depth], ls="-" if ds == "mnist" else "--", lw=1.2)
            top.plot(x, d["cosine_bp"], **style)
            bottom.plot(x, [u / (g + 1e-30) for u, g in zip(d["update_norm"], d["bp_grad_norm"])], **style)
        top.set_title(ALGOS[algo])
        top.set_ylim(-1.05, 1.05)
        bottom.set_yscale("log")
        bottom.set_ylim(1e-12, 1e6)
        bottom.set_xlabel("block l / L (input side -> output)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cos(update_l, BP gradient_l)")
    axes[1][0].set_ylabel("||update_l|| / ||BP gradient_l||")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour[d], label=f"{d} layers") for d in depths]
    axes[0][0].legend(handles=handles, fontsize=7, title="solid: MNIST, dashed: F-MNIST", title_fontsize=7)
    fig.suptitle("each block's weight update against backprop's, end of training (seed 0)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")


def plot_update_vs_backprop(curves: list[tuple[str, dict]], out: str, title: str, legend_size: int = 7) -> None:
    """Two panels over the block index: cos(update_l, BP gradient_l) and ||update_l|| / ||BP gradient_l||,
    one line per (label, diagnostics of an epoch) in ``curves``; saved to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for label, d in curves:
        layers = range(1, len(d["cosine_bp"]) + 1)
        axes[0].plot(layers, d["cosine_bp"], marker=".", label=label)
        axes[1].plot(layers, [u / (g + 1e-30) for u, g in zip(d["update_norm"], d["bp_grad_norm"])], marker=".",
                     label=label)
    axes[0].set(xlabel="block l (1 = input side)", ylabel="cos(update_l, BP gradient_l)", title=title)
    axes[1].set(xlabel="block l (1 = input side)", ylabel="||update_l|| / ||BP gradient_l||", yscale="log",
                title="size of each block's update relative to backprop")
    axes[1].legend(fontsize=legend_size, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in axes:
        ax.grid(alpha=0.3)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    raise SystemExit(main())
