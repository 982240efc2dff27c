#!/usr/bin/env python
"""Divergence boundary of latent LALR strength x latent rate, with and without bidirectional energy:
a table (test accuracy, or how the run ended) and a heatmap per energy, from the probe runs.

Runs: ``results/probes/boundary32/<row>_ms<max_scale>_xlr<latent lr>/seed0`` (the 32-layer MNIST
rows on the first 10,000 images, error-normalised LALR with cap ``max_scale``; cap 1 is constant rates).

    python experiments/boundary_table.py results/probes/boundary32 --out results/deep_pc.md \
        --plot results/plots/boundary_mnist32.png
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.reporting import load_records, replace_marked_block, strict_accuracy  # noqa: E402

RUN = re.compile(r"(?P<row>mnist_resmlp32_(?:pc_se|bpc_skip_lalr))_ms(?P<ms>[\d.]+)_xlr(?P<lr>[\d.]+)")
LABELS = {"mnist_resmlp32_pc_se": "PC (standard energy)", "mnist_resmlp32_bpc_skip_lalr": "bidirectional (lam 0.01, contrastive)"}


def collect(paths: list[str]) -> dict:
    """(row, max_scale, lr) -> test accuracy % (strict) or the run's status when it did not complete."""
    cells = {}
    for r in load_records(paths):
        m = RUN.search(str(r.path))
        if not m:
            continue
        key = (m["row"], float(m["ms"]), float(m["lr"]))
        cells[key] = 100 * strict_accuracy(r)[0] if r.status == "complete" else r.status
    return cells


def table(cells: dict) -> str:
    """One markdown table per row: caps down, latent rates across."""
    out = []
    for row, label in LABELS.items():
        caps = sorted({k[1] for k in cells if k[0] == row})
        rates = sorted({k[2] for k in cells if k[0] == row})
        if not caps:
            continue
        out += [f"{label}:", "", "| LALR cap \\ latent lr | " + " | ".join(f"{r:g}" for r in rates) + " |",
                "|---|" + "---|" * len(rates)]
        for c in caps:
            vals = [cells.get((row, c, r), "not run") for r in rates]
            out.append(f"| {c:g}{' (constant)' if c == 1 else ''} | "
                       + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in vals) + " |")
        out.append("")
    return "\n".join(out)


def plot(cells: dict, path: str) -> None:
    """A heatmap per energy: accuracy over (cap, latent lr); diverged cells marked x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in LABELS if any(k[0] == r for k in cells)]
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        caps = sorted({k[1] for k in cells if k[0] == row})
        rates = sorted({k[2] for k in cells if k[0] == row})
        grid = np.full((len(caps), len(rates)), np.nan)
        for i, c in enumerate(caps):
            for j, r in enumerate(rates):
                v = cells.get((row, c, r))
                if isinstance(v, float):
                    grid[i, j] = v
                elif v is not None:
                    ax.text(j, i, "x\n" + str(v), ha="center", va="center", color="red", fontsize=8)
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(caps)):
            for j in range(len(rates)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
        ax.set_yticks(range(len(caps)), [f"{c:g}" for c in caps])
        ax.set(xlabel="latent SGD rate", ylabel="error-normalised LALR cap (1 = constant)", title=LABELS[row])
    fig.colorbar(im, ax=axes[0].tolist(), label="test accuracy % (strict)")
    fig.suptitle("32-layer residual MLP, MNIST (first 10,000 images), one epoch: where each diverges")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default=None)
    p.add_argument("--plot", default=None)
    a = p.parse_args(argv)
    cells = collect(a.runs)
    text = table(cells)
    print(text)
    if a.out:
        cmd = "python experiments/boundary_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        replace_marked_block(a.out, "boundary-table", cmd, text)
    if a.plot and cells:
        plot(cells, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
