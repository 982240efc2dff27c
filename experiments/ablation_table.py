#!/usr/bin/env python
"""The 64-layer ingredient ablation's table and plots from its run records (``mnist_abl64_*``):
test accuracy (strict protocol) for bidirectional energy on/off x residual skips on/off x each LALR
rule, with backprop and ePC on the same data as references; where a run diverged, where it did.

    python experiments/ablation_table.py results/runs --out results/deep_pc.md \
        --plot results/plots/ablation_mnist64.png --diag-plot results/plots/ablation_diagnostics.png
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.reporting import load_records, replace_marked_block, strict_accuracy  # noqa: E402

ROW = re.compile(r"^mnist_abl64_(?P<algo>pc|bpc|epc|bp)_(?P<skips>res|plain)(?:_(?P<lalr>[a-z_]+?))?$")
RULES = {"constant": "constant", "error_normalised": "error-normalised (cap 10; bidir cap 2)",
         "geometric": "geometric r 1.5", "geometric_mild": "geometric r 1.037",
         "precision": "precision", "log_normalised": "log-normalised (power 1)",
         "log_normalised_half": "log-normalised (power 0.5)",
         "wtrust_ratio": "weight-side trust ratio", "wnormalized": "weight-side normalized"}
ENERGY = {"pc": "standard", "bpc": "bidirectional (lam 0.01)"}
SKIPS = {"res": "residual", "plain": "none"}


def collect(paths: list[str]) -> dict:
    """(algo, skips, lalr) -> (accuracy % or None, status text, diagnostics of the last epoch or None)."""
    out = {}
    for r in load_records(paths):
        m = ROW.match(r.name or "")
        if not m:
            continue
        key = (m["algo"], m["skips"], m["lalr"] or "")
        if r.status == "complete":
            out[key] = (100 * strict_accuracy(r)[0], "complete", (r.epochs[-1] if r.epochs else {}).get("diagnostics"))
        else:
            div = json.loads(Path(r.path).read_text()).get("divergence") or {}
            where = f" (batch {div['batch']}, {div['where']})" if div else ""
            out[key] = (None, f"{r.status}{where}", None)
    return out


def cell(entry) -> str:
    if entry is None:
        return "not run"
    acc, status, _ = entry
    return f"{acc:.2f}" if acc is not None else status


def table(res: dict) -> str:
    lines = ["| energy | skips | " + " | ".join(RULES.values()) + " |", "|---|---|" + "---|" * len(RULES)]
    for skips in SKIPS:
        for algo in ENERGY:
            cells = [cell(res.get((algo, skips, rule))) for rule in RULES]
            if all(c == "not run" for c in cells):
                continue
            lines.append(f"| {ENERGY[algo]} | {SKIPS[skips]} | " + " | ".join(cells) + " |")
    refs = []
    for skips in SKIPS:
        for algo, label in (("bp", "BP"), ("epc", "ePC (beta 0.1, T 32)")):
            if (algo, skips, "") in res:
                refs.append(f"{label}, skips {SKIPS[skips]}: {cell(res[(algo, skips, '')])}")
    return "\n".join(lines) + "\n\nReferences on the same data: " + "; ".join(refs) + ".\n"


def plot(res: dict, out: str) -> None:
    """Heatmap of accuracy (rows: energy x skips; columns: LALR rules); diverged cells marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [(a, s) for s in SKIPS for a in ENERGY]
    grid = np.full((len(rows), len(RULES)), np.nan)
    fig, ax = plt.subplots(figsize=(12, 3.6))
    for i, (a, s) in enumerate(rows):
        for j, rule in enumerate(RULES):
            e = res.get((a, s, rule))
            if e is not None and e[0] is not None:
                grid[i, j] = e[0]
            text = "–" if e is None else (f"{e[0]:.1f}" if e[0] is not None else e[1].split(" ")[0])
            ax.text(j, i, text, ha="center", va="center", fontsize=9)
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(RULES)), [r.replace(" (", "\n(") for r in RULES.values()], fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{ENERGY[a].split(' ')[0]}, skips {SKIPS[s]}" for a, s in rows], fontsize=8)
    bp = res.get(("bp", "res", ""))
    ax.set_title("MNIST, 64-layer muPC MLP, 10k images, 1 epoch: test accuracy %"
                 + (f" (BP with skips {bp[0]:.1f})" if bp and bp[0] is not None else ""))
    fig.colorbar(im, ax=ax, fraction=0.02)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")


def plot_diagnostics(res: dict, out: str) -> None:
    """Per-block update direction and size relative to backprop for the runs with skips that completed."""
    from depth_table import plot_update_vs_backprop

    curves = [(f"{ENERGY.get(algo, algo.upper()).split(' ')[0]} {RULES.get(rule, '')} ({acc:.1f} %)", d)
              for (algo, skips, rule), (acc, _, d) in sorted(res.items()) if skips == "res" and d and algo != "bp"]
    plot_update_vs_backprop(curves, out, "64 layers: direction of each block's update vs backprop")


def main(argv=None) -> int:
    from depth_table import study_arguments

    a = study_arguments(__doc__, "ablation-table", "PNG heatmap of the table", "PNG of per-block cosine / update size vs backprop").parse_args(argv)
    res = collect(a.runs)
    if not res:
        print("no mnist_abl64_* records found", file=sys.stderr)
        return 1
    text = table(res)
    print(text)
    if a.out:
        cmd = "python experiments/ablation_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        replace_marked_block(a.out, "ablation-table", cmd, text)
    if a.plot:
        plot(res, a.plot)
    if a.diag_plot:
        plot_diagnostics(res, a.diag_plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
