"""Run records -> evaluation protocols -> markdown tables and plots.

Training writes one ``record.json`` per run directory (schema 1, see :class:`Record`).  This
module reads them, groups runs that differ only by seed, and reports two protocols:

* **strict** – per seed, the test accuracy at the epoch with the best validation accuracy
  (ties -> earliest epoch; without a validation split the last epoch's test accuracy, flagged
  ``last epoch``); mean ± sample std (ddof=1) over all seeds.
* **PCX** – per seed, the best test accuracy over epochs; mean ± sample std over the best
  ``n - 2`` seeds when ``n >= 7`` (best 5 of 7), else over all seeds, flagged ``n<7``.

Accuracies in records are fractions; everything reported here is in percent.  Runs with status
``running`` or ``interrupted`` (unfinished) are left out of the numbers (and flagged); ``diverged``
and ``failed`` runs count and are flagged.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
PCX_DROP, PCX_MIN_SEEDS = 2, 7


class RecordError(ValueError):
    """A run record is missing, unreadable or does not follow the schema (names the file)."""


@dataclass
class Record:
    """One training run, as stored in ``record.json``."""

    path: Path
    name: str
    dataset: str
    model: str
    algorithm: str
    seed: int | None = None
    config: dict = field(default_factory=dict)
    reference: dict | None = None
    hardware: dict = field(default_factory=dict)
    git_commit: str | None = None
    status: str = "complete"
    epochs: list[dict] = field(default_factory=list)
    inference_trace: list[list[float]] | None = None
    summary: dict = field(default_factory=dict)

    @property
    def base_name(self) -> str:
        """``name`` without a trailing seed marker (``_seed3``, ``-seed=3``, ``_s3``)."""
        if self.seed is None:
            return self.name
        return re.sub(rf"[_\-.]?(seed[_=\-]?|s){re.escape(str(self.seed))}$", "", self.name) or self.name

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Record:
        """Validate ``data`` (a parsed record.json) and build a Record; RecordError if invalid."""
        if not isinstance(data, dict):
            raise RecordError(f"{path}: a run record must be a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise RecordError(f"{path}: unsupported record schema {data.get('schema')!r} "
                              f"(this pcjax reads schema {SCHEMA_VERSION})")
        for key in ("name", "dataset", "model", "algorithm"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise RecordError(f"{path}: missing or empty string field {key!r}")
        epochs = data.get("epochs") or []
        if not isinstance(epochs, list) or not all(
            isinstance(e, dict) and isinstance(e.get("epoch"), int) for e in epochs
        ):
            raise RecordError(f"{path}: 'epochs' must be a list of objects with an integer 'epoch'")
        kwargs = {k: data[k] for k in ("seed", "config", "reference", "hardware", "git_commit",
                                       "status", "inference_trace", "summary") if data.get(k) is not None}
        return cls(path=path, name=data["name"], dataset=data["dataset"], model=data["model"],
                   algorithm=data["algorithm"], epochs=sorted(epochs, key=lambda e: e["epoch"]), **kwargs)


#: Statuses of runs that did not finish; they are flagged but left out of the numbers.
UNFINISHED = ("running", "interrupted")


def _read_record(path: Path) -> Record:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable run record ({exc})") from exc
    return Record.from_dict(data, path)


def load_records(paths: Iterable[str | Path]) -> list[Record]:
    """Load records from run dirs, ``record.json`` files, or dirs searched recursively."""
    files: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found = [path]
        elif (path / "record.json").is_file():
            found = [path / "record.json"]
        elif path.is_dir():
            found = sorted(path.rglob("record.json"))
            if not found:
                raise RecordError(f"{path}: no record.json found in this directory or below")
        else:
            raise RecordError(f"{path}: no such file or directory")
        files.update((f.resolve(), None) for f in found)
    return [_read_record(f) for f in files]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def strict_accuracy(record: Record) -> tuple[float | None, str]:
    """Test accuracy (fraction) at the best-``val_acc`` epoch, and how it was chosen."""
    scored = [e for e in record.epochs if _finite(e.get("test_acc"))]
    with_val = [e for e in scored if _finite(e.get("val_acc"))]
    if with_val:
        best = max(with_val, key=lambda e: (e["val_acc"], -e["epoch"]))  # ties -> earliest
        return float(best["test_acc"]), "best val"
    if scored:
        return float(scored[-1]["test_acc"]), "last epoch"
    return None, "no test acc"


def pcx_accuracy(record: Record) -> float | None:
    """Best test accuracy (fraction) over epochs."""
    values = [e["test_acc"] for e in record.epochs if _finite(e.get("test_acc"))]
    return float(max(values)) if values else None


@dataclass
class ProtocolResult:
    """Mean ± sample std (percent) of one protocol over the seeds it uses."""

    protocol: str
    values: list[float]
    n_total: int
    flags: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        """Mean in percent (``None`` without values)."""
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1) in percent; ``None`` with fewer than 2 values."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def format(self) -> str:
        """``"97.12 ± 0.08"`` (just the mean for one seed, ``"–"`` for none)."""
        if self.mean is None:
            return "–"
        text = f"{self.mean:.2f}" if self.std is None else f"{self.mean:.2f} ± {self.std:.2f}"
        return text + (f" ({', '.join(self.flags)})" if self.flags else "")


def strict_protocol(records: Sequence[Record]) -> ProtocolResult:
    """Strict protocol over the seeds in ``records``."""
    picks = [strict_accuracy(r) for r in records]
    values = [100 * v for v, _ in picks if v is not None]
    flags = ["last epoch"] if any(label == "last epoch" for _, label in picks) else []
    return ProtocolResult("strict", values, len(records), flags)


def pcx_protocol(records: Sequence[Record]) -> ProtocolResult:
    """PCX protocol: best-epoch test acc per seed; drop the 2 worst seeds when n >= 7."""
    values = sorted((100 * v for r in records if (v := pcx_accuracy(r)) is not None), reverse=True)
    if len(values) >= PCX_MIN_SEEDS:
        return ProtocolResult("pcx", values[: len(values) - PCX_DROP], len(values),
                              [f"best {len(values) - PCX_DROP} of {len(values)}"])
    return ProtocolResult("pcx", values, len(values), ["n<7"] if values else [])


@dataclass
class Row:
    """One table row: the runs of one configuration across seeds."""

    name: str
    dataset: str
    model: str
    algorithm: str
    records: list[Record]

    @property
    def used(self) -> list[Record]:
        """Records that enter the numbers (all but unfinished ones: ``running``, ``interrupted``)."""
        return [r for r in self.records if r.status not in UNFINISHED]

    @property
    def strict(self) -> ProtocolResult:
        """Strict-protocol result."""
        return strict_protocol(self.used)

    @property
    def pcx(self) -> ProtocolResult:
        """PCX-protocol result."""
        return pcx_protocol(self.used)

    @property
    def reference(self) -> dict | None:
        """First published reference among the records."""
        return next((r.reference for r in self.records if r.reference), None)

    def reference_delta(self) -> tuple[float, str] | None:
        """(ours − reference) in points, under the reference's protocol (default ``pcx``)."""
        ref = self.reference
        if not ref or not _finite(ref.get("value")):
            return None
        protocol = str(ref.get("protocol") or "pcx").lower()
        ours = (self.strict if protocol == "strict" else self.pcx).mean
        return None if ours is None else (ours - float(ref["value"]), protocol)

    def seconds_per_epoch(self) -> list[float]:
        """Mean seconds per epoch for each used seed."""
        out = []
        for r in self.used:
            s = r.summary.get("seconds_per_epoch")
            if not _finite(s):
                secs = [e["seconds"] for e in r.epochs if _finite(e.get("seconds"))]
                s = statistics.fmean(secs) if secs else None
            if s is not None:
                out.append(float(s))
        return out

    def flags(self) -> list[str]:
        """Status flags: non-complete runs, duplicate seeds."""
        counts = Counter(r.status for r in self.records)
        flags = [f"{n} {s}" + (" (excluded)" if s in UNFINISHED else "")
                 for s, n in sorted(counts.items()) if s != "complete"]
        seeds = Counter(r.seed for r in self.records if r.seed is not None)
        if any(n > 1 for n in seeds.values()):
            flags.append("duplicate seeds " + ",".join(str(s) for s, n in seeds.items() if n > 1))
        return flags


def group_rows(records: Iterable[Record]) -> list[Row]:
    """Group records by (dataset, model, algorithm, name without seed), sorted."""
    groups: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.algorithm, r.base_name)].append(r)
    return [Row(name, ds, model, algo, sorted(rs, key=lambda r: (r.seed is None, r.seed or 0)))
            for (ds, model, algo, name), rs in sorted(groups.items())]


HEADER = ["Row", "Dataset", "Model", "Algorithm", "Seeds", "Epochs", "Strict test acc %",
          "PCX-protocol acc %", "Reference %", "Δ vs ref", "s/epoch", "Hardware", "Flags"]


def _row_cells(row: Row) -> list[str]:
    n_epochs = sorted({len(r.epochs) for r in row.used})
    epochs = "–" if not n_epochs else (str(n_epochs[0]) if len(n_epochs) == 1 else f"{n_epochs[0]}–{n_epochs[-1]}")
    ref = row.reference
    ref_text = f"{float(ref['value']):.2f} ({ref.get('source', '?')})" if ref and _finite(ref.get("value")) else "–"
    delta = row.reference_delta()
    delta_text = f"{delta[0]:+.2f} ({delta[1]})" if delta else "–"
    secs = row.seconds_per_epoch()
    kinds = sorted({str(r.hardware.get("device_kind") or r.hardware.get("backend") or "?") for r in row.records})
    return [row.name, row.dataset, row.model, row.algorithm, str(len(row.used)), epochs,
            row.strict.format(), row.pcx.format(), ref_text, delta_text,
            f"{statistics.fmean(secs):.2f}" if secs else "–", ", ".join(kinds), "; ".join(row.flags()) or "–"]


def render_table(rows: Sequence[Row], expected: Sequence[str] = ()) -> str:
    """Markdown table of ``rows``; names in ``expected`` without records get a ``not run`` line."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(r)) + " |" for r in rows]
    present = {r.name for r in rows} | {rec.name for r in rows for rec in r.records}
    for name in expected:
        if name not in present:
            lines.append("| " + " | ".join([name] + ["–"] * (len(HEADER) - 2) + ["not run"]) + " |")
    return "\n".join(lines)


PROTOCOL_NOTE = (
    "**Protocols.** *Strict*: per seed, the test accuracy at the epoch with the best validation "
    "accuracy (ties → earliest epoch; runs without a validation split use the last epoch, flagged "
    "`last epoch`); mean ± sample std (ddof=1) over all seeds. *PCX*: per seed, the best test "
    "accuracy over epochs; mean ± sample std (ddof=1) over the best n−2 seeds when n ≥ 7 (best 5 of "
    "7), otherwise over all seeds (flagged `n<7`). Diverged runs count in both protocols; running "
    "runs are excluded. Δ = ours − published reference, under the reference's protocol. "
    "s/epoch is the mean over seeds of each run's seconds per epoch.")


def render_markdown(rows: Sequence[Row], *, command: str, title: str = "pcjax results",
                    expected: Sequence[str] = (), plots: Sequence[Path] = (),
                    out_dir: Path | None = None) -> str:
    """Full results document: generated-file notice, table, protocol note, plots, run list."""
    parts = [f"# {title}", "",
             f"<!-- GENERATED FILE - do not edit by hand. Regenerate with: {command} -->",
             f"*This file is generated by `{command}`; do not edit it by hand.*", "",
             render_table(rows, expected), "", PROTOCOL_NOTE, ""]
    if plots:
        parts += ["## Plots", ""]
        for p in plots:
            rel = os.path.relpath(p, out_dir) if out_dir else str(p)
            parts += [f"![{p.stem}]({Path(rel).as_posix()})", ""]
    parts += ["## Runs", "", "| Row | Seed | Status | Epochs | Strict % | Best test % | Commit | Record |",
              "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for r in row.records:
            s, label = strict_accuracy(r)
            b = pcx_accuracy(r)
            rec = os.path.relpath(r.path, out_dir) if out_dir else str(r.path)
            parts.append(f"| {row.name} | {r.seed} | {r.status} | {len(r.epochs)} | "
                         f"{'–' if s is None else f'{100 * s:.2f}'}{' (last epoch)' if label == 'last epoch' else ''} | "
                         f"{'–' if b is None else f'{100 * b:.2f}'} | {(r.git_commit or '–')[:10]} | {Path(rec).as_posix()} |")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------- plots

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend state; PNG via Agg

    return Figure(figsize=(width, height), layout="constrained")


def _line_label(row: Row, rows: Sequence[Row]) -> str:
    same = [r for r in rows if r.algorithm == row.algorithm]
    return row.algorithm if len(same) == 1 else f"{row.algorithm} ({row.name})"


def plot_accuracy(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Test accuracy vs epoch, one line per algorithm (mean ± std band), one PNG per (dataset, model)."""
    by_dm: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_dm[(row.dataset, row.model)].append(row)
    written = []
    for (dataset, model), group in sorted(by_dm.items()):
        fig = _figure()
        ax = fig.add_subplot()
        drawn = False
        for row in group:
            per_epoch: dict[int, list[float]] = defaultdict(list)
            for r in row.used:
                for e in r.epochs:
                    if _finite(e.get("test_acc")):
                        per_epoch[e["epoch"]].append(100 * e["test_acc"])
            if not per_epoch:
                continue
            xs = sorted(per_epoch)
            mean = [statistics.fmean(per_epoch[x]) for x in xs]
            std = [statistics.stdev(per_epoch[x]) if len(per_epoch[x]) > 1 else 0.0 for x in xs]
            (line,) = ax.plot(xs, mean, marker="o", ms=3, label=f"{_line_label(row, group)} (n={len(row.used)})")
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.2)
            drawn = True
        if not drawn:
            continue
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{dataset} / {model}: test accuracy (mean ± std)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out_dir / f"acc_{_slug(dataset)}_{_slug(model)}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def plot_energy(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Per-layer energy across inference steps (log y), one PNG per row with a trace."""
    written = []
    for row in rows:
        traces = [r.inference_trace for r in row.used if r.inference_trace]
        if not traces:
            continue
        shape = (len(traces[0]), len(traces[0][0]) if traces[0] else 0)
        same = [t for t in traces if (len(t), len(t[0]) if t else 0) == shape]
        steps, layers = shape
        if not steps or not layers:
            continue
        fig = _figure()
        ax = fig.add_subplot()
        for layer in range(layers):
            ys = [statistics.fmean(t[s][layer] for t in same) for s in range(steps)]
            ax.plot(range(steps), [y if y > 0 else float("nan") for y in ys], label=f"layer {layer + 1}")
        ax.set_yscale("log")
        ax.set(xlabel="inference step t", ylabel="mean energy",
               title=f"{row.name} ({row.algorithm}): energy per layer, mean of {len(same)} seed(s)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", ncol=2)
        path = out_dir / f"energy_{_slug(row.name)}.png"
        if path in written:  # same name under two algorithms/datasets
            path = path.with_name(f"energy_{_slug(row.name)}_{_slug(row.dataset)}_{_slug(row.model)}_{_slug(row.algorithm)}.png")
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def is_backprop(algorithm: str) -> bool:
    """Whether ``algorithm`` names the backprop baseline (``bp``, ``bp-*``, ``backprop``)."""
    a = algorithm.lower()
    return a == "bp" or a.startswith(("bp-", "bp_", "backprop"))


def plot_timing(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Seconds per epoch, PC vs BP bars (± std over seeds), one PNG per (dataset, model)."""
    by_dm: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row.seconds_per_epoch():
            by_dm[(row.dataset, row.model)].append(row)
    written = []
    for (dataset, model), group in sorted(by_dm.items()):
        fig = _figure(max(4.0, 1.2 * len(group) + 2), 4.0)
        ax = fig.add_subplot()
        for i, row in enumerate(group):
            secs = row.seconds_per_epoch()
            bp = is_backprop(row.algorithm)
            ax.bar(i, statistics.fmean(secs), yerr=statistics.stdev(secs) if len(secs) > 1 else 0.0,
                   color="tab:gray" if bp else "tab:blue", capsize=3, label="BP" if bp else "PC")
        ax.set_xticks(range(len(group)), [_line_label(r, group) for r in group], rotation=20, ha="right")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize="small")
        ax.set(ylabel="seconds / epoch", title=f"{dataset} / {model}: training time per epoch")
        path = out_dir / f"time_{_slug(dataset)}_{_slug(model)}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def make_plots(rows: Sequence[Row], out_dir: str | Path) -> list[Path]:
    """Write all plots (accuracy, energy traces, timing) into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return plot_accuracy(rows, out) + plot_energy(rows, out) + plot_timing(rows, out)
