#!/usr/bin/env python
"""The depth study's convnet block from its run records (``{cifar10,cifar100}_{vgg5,vgg7,vgg9}q10k_*``):
test accuracy (strict protocol) of PC-SE, ePC, bidirectional + skip + LALR and backprop (PC-SE and
backprop also with the long skip edge of the bidirectional rows) on quarter-width VGGs trained on the
first 10,000 training images, the best PC-family gap to the better backprop and the target (within 1 pt
of backprop on VGG-7 and VGG-9).

    python experiments/convnet_table.py results/runs --out results/deep_pc.md --plot results/plots/convnets_cifar.png \
        --diag-plot results/plots/convnets_diagnostics.png
"""

from __future__ import annotations

import re
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_table import best_gap, cell_text, gap_text, study_arguments  # noqa: E402

from pcjax.reporting import load_records, replace_marked_block, strict_accuracy  # noqa: E402

ALGOS = {"pc_se": "PC-SE", "pc_se_skip": "PC-SE + skip", "epc_se": "ePC", "epc_se_skip": "ePC + skip",
         "epcg_se": "ePC (nudged, guarded)", "epcg_se_skip": "ePC (nudged, guarded) + skip",
         "qi_s": "Qi S (FU)", "qi_d": "Qi D (FU)", "qi_s_aux": "Qi S + aux", "qi_d_aux": "Qi D + aux",
         "qi_s_skip_aux": "Qi S + skip on aux neurons", "qi_d_skip_aux": "Qi D + skip on aux neurons",
         "bpc_skip_lalr": "bidir + skip + LALR",
         "bp_se": "BP", "bp_se_skip": "BP + skip"}
MODELS = ("vgg5", "vgg7", "vgg9", "resnet18")
DATASETS = ("cifar10", "cifar100")
# ``...q10k_...``: the block's budget; ``...q10ke<N>_...``: the same row trained for N epochs
ROW = re.compile(r"^(?P<ds>" + "|".join(DATASETS) + r")_(?P<model>" + "|".join(MODELS) + r")q10k(?:e(?P<ep>\d+))?_(?P<algo>"
                 + "|".join(sorted(ALGOS, key=len, reverse=True)) + r")$")
TARGET_PT = 1.0  # best PC-family variant within 1 pt of backprop ...
TARGET_MODELS = ("vgg7", "vgg9", "resnet18")  # ... on these models
COS_BP = 0.99  # every block at least this close to backprop's direction: the update is BP in disguise


def row_key(m: re.Match) -> tuple[str, str, str]:
    """(dataset, model variant, algo) of a matched row name; the variant of a ``q10ke<N>`` row is
    ``<model>e<N>``."""
    return m["ds"], m["model"] + (f"e{m['ep']}" if m["ep"] else ""), m["algo"]


def last_cosines(records: list):
    """(match, record, cosines) of every complete seed-0 PC-family run whose last epoch carries
    ``cosine_bp`` (runs with ``trainer.diagnostics=true``)."""
    for r in records:
        m = ROW.match(r.name or "")
        if (m and not m["algo"].startswith("bp_se") and r.status == "complete" and r.seed == 0 and r.epochs
                and "cosine_bp" in (r.epochs[-1].get("diagnostics") or {})):
            yield m, r, r.epochs[-1]["diagnostics"]["cosine_bp"]


def collect(records: list) -> tuple[dict, dict, dict]:
    """(dataset, model, algo) -> [(strict test acc %, s/epoch)] over complete runs; the same key ->
    statuses of runs that did not complete; (dataset, model) -> the set of epoch counts trained."""
    done: dict = defaultdict(list)
    failed: dict = defaultdict(list)
    epochs: dict = defaultdict(set)
    for r in records:
        m = ROW.match(r.name or "")
        if not m:
            continue
        key = row_key(m)
        epochs[key[:2]].add(int((r.config.get("trainer") or {}).get("epochs", len(r.epochs))))
        if r.status != "complete":
            failed[key].append(r.status)
            continue
        secs = [e["seconds"] for e in r.epochs]
        done[key].append((100 * strict_accuracy(r)[0], sum(secs) / len(secs)))
    return done, failed, epochs


def base_model(variant: str) -> str:
    """``vgg9e8`` (the longer-budget row) -> ``vgg9``; ``resnet18e8`` -> ``resnet18``."""
    return re.sub(r"e\d+$", "", variant)


def variants(keys) -> list[str]:
    """The model variants present, in the order VGG-5, VGG-7, VGG-9, each base row before its longer ones."""
    found = {k[1] for k in keys}
    return sorted(found, key=lambda v: (MODELS.index(base_model(v)), len(v), v))


def target_text(model: str, gap: float | None, by_bp_row: bool = False, gap_differs: float | None = None) -> str:
    """met / missed; ``by_bp_row``: the best PC-family row is flagged ``= BP`` (``bp_like``), and then
    ``gap_differs`` (the gap without the rows = BP) says whether a row whose update differs meets it too."""
    if base_model(model) not in TARGET_MODELS:
        return "(no target)"
    if gap is None:
        return "not measured"
    if gap < -TARGET_PT:
        return "missed"
    if not by_bp_row:
        return "met"
    if gap_differs is not None and gap_differs >= -TARGET_PT:
        return "met, also without rows = BP"
    return "met, by a row = BP"


def bp_like(records: list) -> set:
    """(dataset, model variant, algo) of the PC-family rows whose seed-0 run updates every block at
    cos >= ``COS_BP`` to backprop's gradient in its last epoch (``cosine_table``'s ``= BP``)."""
    return {row_key(m) for m, _, cos in last_cosines(records) if min(cos, default=0.0) >= COS_BP}


def present(done: dict, failed: dict) -> dict:
    """The algorithm columns that have at least one run, in ``ALGOS`` order."""
    seen = {k[2] for k in [*done, *failed]}
    return {algo: label for algo, label in ALGOS.items() if algo in seen}


def table(done: dict, failed: dict, epochs: dict, bp_rows: set = frozenset()) -> str:
    """The accuracy table; ``bp_rows`` (``bp_like``): rows left out of the second gap column."""
    algos = present(done, failed)
    lines = ["| dataset | model | epochs | " + " | ".join(algos.values()) + " | best PC-family - best BP | "
             "same without rows = BP | " f"target (within {TARGET_PT:g} pt) |", "|---|---|---|" + "---|" * (len(algos) + 3)]
    for ds in DATASETS:
        for model in variants([*done, *failed]):
            if not any((ds, model, algo) in done or (ds, model, algo) in failed for algo in algos):
                continue
            means = {algo: statistics.mean(acc for acc, _ in done[(ds, model, algo)])
                     for algo in algos if done.get((ds, model, algo))}
            cells = [cell_text(done.get((ds, model, algo), []), failed.get((ds, model, algo), [])) for algo in algos]
            ep = "/".join(str(e) for e in sorted(epochs[(ds, model)]))
            differs = {a: v for a, v in means.items() if (ds, model, a) not in bp_rows}
            pcf = {a: v for a, v in means.items() if not a.startswith("bp_se")}
            best = max(pcf, key=pcf.get) if pcf else None
            lines.append(f"| {ds} | {base_model(model).upper()} | {ep} | " + " | ".join(cells)
                         + f" | {gap_text(means)} | {gap_text(differs)} | "
                         f"{target_text(model, best_gap(means), (ds, model, best) in bp_rows, best_gap(differs))} |")
    return "\n".join(lines) + "\n"


def cosine_table(records: list) -> str:
    """Per PC-family row (seed 0, last epoch, runs with ``trainer.diagnostics=true``): its accuracy and
    cos(update_l, BP gradient_l) for every block l, input side first, flagged ``= BP`` when every block is
    at least ``COS_BP``: such an update is backprop's direction, not evidence for PC."""
    rows = []
    for m, r, cos in last_cosines(records):
        rows.append(((DATASETS.index(m["ds"]), MODELS.index(m["model"]), int(m["ep"] or 0), list(ALGOS).index(m["algo"])),
                     f"| {m['ds']} | {m['model'].upper()} | {len(r.epochs)} | {ALGOS[m['algo']]} | "
                     f"{100 * strict_accuracy(r)[0]:.2f} | {' '.join(f'{c:.2f}' for c in cos)} | "
                     f"{min(cos):.2f} | {'= BP' if min(cos) >= COS_BP else 'differs'} |"))
    if not rows:
        return ""
    head = ["", f"Direction of each block's weight update against backprop's gradient on the same batch (seed 0, last "
            f"epoch; a row whose every block is at cos >= {COS_BP:g} is flagged `= BP`: its update is backprop's "
            "direction, whatever the accuracy says about PC):", "",
            "| dataset | model | epochs | algorithm | strict test acc % | cos to BP per block (input -> output) | "
            "min | reads as |", "|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + [line for _, line in sorted(rows, key=lambda x: x[0])]) + "\n"


def plot(done: dict, epochs: dict, out: str) -> None:
    """Grouped bars: test accuracy per model (and budget) and algorithm, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = [ds for ds in DATASETS if any(k[0] == ds for k in done)]
    fig, axes = plt.subplots(1, len(dss), figsize=(6 * len(dss), 4), squeeze=False)
    width = 0.8 / len(ALGOS)
    for ax, ds in zip(axes[0], dss):
        models = variants(k for k in done if k[0] == ds)
        for i, (algo, label) in enumerate(ALGOS.items()):
            xs, ys = [], []
            for j, model in enumerate(models):
                runs = done.get((ds, model, algo))
                if runs:
                    xs.append(j + (i - (len(ALGOS) - 1) / 2) * width)
                    ys.append(statistics.mean(acc for acc, _ in runs))
            bars = ax.bar(xs, ys, width, label=label, color={"bp_se": "0.3", "bp_se_skip": "0.6"}.get(algo))
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(models)), [f"{base_model(m).upper()}\n{'/'.join(map(str, sorted(epochs[(ds, m)])))} ep"
                                           for m in models])
        ax.set(ylabel="test accuracy % (strict)", title=f"{ds}: quarter-width VGGs, first 10k training images")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, axis="y")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")


def plot_diagnostics(records: list, out: str) -> bool:
    """Per-layer cos(update, BP gradient) and update size vs backprop, last epoch, seed 0, CIFAR-10 VGG-7
    and VGG-9 at the longest budget that has runs with trainer.diagnostics=true; False when there is none."""
    from depth_table import plot_update_vs_backprop

    found: dict = defaultdict(list)  # (model, epochs) -> curves
    for r in records:
        m = ROW.match(r.name or "")
        if (m and m["ds"] == "cifar10" and m["model"] in TARGET_MODELS and not m["algo"].startswith("bp_se")
                and r.status == "complete" and r.seed == 0 and r.epochs and "diagnostics" in r.epochs[-1]):
            found[(m["model"], len(r.epochs))].append(
                (f"{m['model'].upper()} {len(r.epochs)} ep: {ALGOS[m['algo']]}", r.epochs[-1]["diagnostics"]))
    longest = {model: max(ep for mo, ep in found if mo == model) for model, _ in found}
    curves = [c for (model, ep), cs in found.items() if ep == longest[model] for c in cs]
    if curves:
        plot_update_vs_backprop(sorted(curves, key=lambda c: c[0]), out,
                                "CIFAR-10 VGGs: direction of each layer's update vs backprop")
    return bool(curves)


def main(argv=None) -> int:
    a = study_arguments(__doc__, "convnet-table", "PNG of accuracy per model and algorithm", "PNG of per-layer cosine / update size vs backprop").parse_args(argv)
    records = list(load_records(a.runs))  # read once, used by the table, the cosines and the plots
    done, failed, epochs = collect(records)
    if not done and not failed:
        print("no {cifar10,cifar100}_{vgg*,resnet18}q10k_* records found", file=sys.stderr)
        return 1
    text = table(done, failed, epochs, bp_like(records)) + cosine_table(records)
    print(text)
    if a.out:
        cmd = "python experiments/convnet_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        replace_marked_block(a.out, "convnet-table", cmd, text)
    if a.plot and done:
        plot(done, epochs, a.plot)
    if a.diag_plot:
        plot_diagnostics(records, a.diag_plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
