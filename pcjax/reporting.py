"""Run records -> evaluation protocols -> markdown tables and plots.

Training writes one ``record.json`` per run directory (schema 1, see :class:`Record`).  This
module reads them and groups them into table rows: runs of the same name (dataset, model,
algorithm) whose configs differ only by seed and by keys that never change what is computed
(:data:`NON_MATH_KEYS`) form one row; every other config key that differs between runs of one
name is a *swept* key, and each combination of its values is a row of its own (a Hydra grid
``algorithm.T=4,8 algorithm.latent.lr=0.01,0.05 seed=0,1`` gives four rows of two seeds; Optuna
trials give one row each).  Each row reports two protocols:

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

import hashlib
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

from .collapse import find_collapse

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


def best_val_accuracy(record: Record) -> float | None:
    """Best validation accuracy (fraction) over epochs (``None`` without a validation split)."""
    values = [e["val_acc"] for e in record.epochs if _finite(e.get("val_acc"))]
    return float(max(values)) if values else None


def val_protocol(records: Sequence[Record]) -> ProtocolResult:
    """Best validation accuracy per seed, mean ± sample std (percent): what a sweep selects on."""
    values = [100 * v for r in records if (v := best_val_accuracy(r)) is not None]
    return ProtocolResult("val", values, len(records))


# ------------------------------------------------------------------------ rows and sweeps

#: Config keys (and key prefixes) that never change what a run computes: the seed (rows pool
#: seeds), names, output and bookkeeping locations, progress bars, resuming, checkpointing,
#: tracking backends, where data is read from, plugin modules to import, the published reference.
NON_MATH_KEYS: tuple[str, ...] = (
    "seed", "name", "run_dir", "plugins", "reference", "tracking", "dataset.root", "dataset.download",
    "trainer.progress", "trainer.resume", "trainer.checkpoint", "trainer.checkpoint_minutes", "trainer.keep_checkpoints", "trainer.extend_epochs",
    "trainer.divergence_threshold", "trainer.compile_cache", "trainer.diagnostics", "trainer.devices", "algorithm.xla_fusion",
)


class _Absent:
    """A config key that a run's config does not have."""

    def __repr__(self) -> str:
        return "–"


ABSENT = _Absent()


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"algorithm.latent.lr": 0.01, ...}`` (empty dicts and lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = value
    return out


def _canon(value: Any) -> str:
    """A hashable, order-independent text of a config value (1 and 1.0 stay different types)."""
    if value is ABSENT:
        return "<absent>"
    return json.dumps(value, sort_keys=True, default=str) + ":" + type(value).__name__


def _ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in ignore)


def swept_keys(records: Sequence[Record], ignore: Sequence[str] = NON_MATH_KEYS) -> list[str]:
    """Config keys (dotted, sorted) whose values differ between ``records``, ``ignore`` aside.

    A key that only some configs have counts when runs of the same git commit disagree about it
    (an added ``+key=value`` override); between different commits it is a schema change (a new
    config field) and does not split rows."""
    flats = [flatten_config(r.config) for r in records]
    out = []
    for key in sorted(set().union(*flats)):
        if _ignored(key, ignore):
            continue
        if len({_canon(f[key]) for f in flats if key in f}) > 1:
            out.append(key)
            continue
        with_key = {r.git_commit for r, f in zip(records, flats) if key in f}
        without = {r.git_commit for r, f in zip(records, flats) if key not in f}
        if with_key & without:
            out.append(key)
    return out


def format_value(value: Any) -> str:
    """Config value as it is written on a Hydra command line (floats to 4 significant digits)."""
    if value is ABSENT:
        return "–"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _value_order(value: Any) -> tuple:
    if value is ABSENT:
        return (0, 0.0, "")
    if isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, (int, float)):
        return (2, float(value) if math.isfinite(value) else math.inf, "")
    return (3, 0.0, _canon(value))


def _numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                for v in values)


@dataclass
class Row:
    """One table row: the runs of one configuration across seeds.

    ``swept`` holds the values of the keys that differ between runs of this row's name (empty
    for a row whose runs differ only by seed)."""

    name: str
    dataset: str
    model: str
    algorithm: str
    records: list[Record]
    swept: dict[str, Any] = field(default_factory=dict)

    @property
    def swept_text(self) -> str:
        """``"algorithm.T=4, algorithm.latent.lr=0.01"`` (empty without swept keys)."""
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.swept.items())

    @property
    def label(self) -> str:
        """The row name, with its swept values in brackets when it has any."""
        return f"{self.name} [{self.swept_text}]" if self.swept else self.name

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
    def val(self) -> ProtocolResult:
        """Best validation accuracy (mean ± std over seeds)."""
        return val_protocol(self.used)

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
        """Status flags: non-complete runs, runs that collapsed (``pcjax.collapse``), duplicate seeds."""
        counts = Counter(r.status for r in self.records)
        flags = [f"{n} {s}" + (" (excluded)" if s in UNFINISHED else "")
                 for s, n in sorted(counts.items()) if s != "complete"]
        collapsed = [(r.seed, c) for r, c in ((r, find_collapse(r.epochs)) for r in self.used) if c is not None]
        if collapsed:
            where = ", ".join(f"seed {s} at epoch {c['epoch']}" if s is not None else f"epoch {c['epoch']}"
                              for s, c in collapsed)
            flags.append(f"{len(collapsed)} collapsed ({where})")
        seeds = Counter(r.seed for r in self.records if r.seed is not None)
        if any(n > 1 for n in seeds.values()):
            flags.append("duplicate seeds " + ",".join(str(s) for s, n in seeds.items() if n > 1))
        return flags


def group_rows(records: Iterable[Record], ignore: Sequence[str] = NON_MATH_KEYS) -> list[Row]:
    """Group records by (dataset, model, algorithm, name without seed) and, within a name, by the
    values of its swept keys (:func:`swept_keys`; ``ignore`` lists keys that never split rows);
    sorted by name, then by swept values."""
    groups: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.algorithm, r.base_name)].append(r)
    rows = []
    for (ds, model, algo, name), recs in sorted(groups.items()):
        keys = swept_keys(recs, ignore)
        by_values: dict[tuple[str, ...], list[Record]] = defaultdict(list)
        values: dict[tuple[str, ...], tuple] = {}
        for r in recs:
            flat = flatten_config(r.config)
            vals = tuple(flat.get(k, ABSENT) for k in keys)
            canon = tuple(_canon(v) for v in vals)
            by_values[canon].append(r)
            values[canon] = vals
        for canon in sorted(by_values, key=lambda c: tuple(_value_order(v) for v in values[c])):
            rs = sorted(by_values[canon], key=lambda r: (r.seed is None, r.seed or 0))
            rows.append(Row(name, ds, model, algo, rs, dict(zip(keys, values[canon]))))
    return rows


def sweep_groups(rows: Sequence[Row]) -> list[list[Row]]:
    """The rows of each sweep: rows of one (dataset, model, algorithm, name) that have swept keys."""
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for row in rows:
        if row.swept:
            groups.setdefault((row.dataset, row.model, row.algorithm, row.name), []).append(row)
    return list(groups.values())


# ----------------------------------------------------------------------------------- tables

HEADER = ["Row", "Dataset", "Model", "Algorithm", "Seeds", "Epochs", "Strict test acc %",
          "PCX-protocol acc %", "Reference %", "Δ vs ref", "s/epoch", "Hardware", "Flags"]
SWEPT_COLUMN = "Swept"


def _epochs_text(row: Row) -> str:
    n_epochs = sorted({len(r.epochs) for r in row.used})
    return "–" if not n_epochs else (str(n_epochs[0]) if len(n_epochs) == 1 else f"{n_epochs[0]}–{n_epochs[-1]}")


def _seconds_text(row: Row) -> str:
    secs = row.seconds_per_epoch()
    return f"{statistics.fmean(secs):.2f}" if secs else "–"


def _row_cells(row: Row, swept_column: bool = False) -> list[str]:
    ref = row.reference
    ref_text = f"{float(ref['value']):.2f} ({ref.get('source', '?')})" if ref and _finite(ref.get("value")) else "–"
    delta = row.reference_delta()
    delta_text = f"{delta[0]:+.2f} ({delta[1]})" if delta else "–"
    kinds = sorted({str(r.hardware.get("device_kind") or r.hardware.get("backend") or "?") for r in row.records})
    swept = [row.swept_text or "–"] if swept_column else []
    return [row.name, row.dataset, row.model, row.algorithm, *swept, str(len(row.used)), _epochs_text(row),
            row.strict.format(), row.pcx.format(), ref_text, delta_text,
            _seconds_text(row), ", ".join(kinds), "; ".join(row.flags()) or "–"]


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def render_table(rows: Sequence[Row], expected: Sequence[str] = ()) -> str:
    """Markdown table of ``rows``; names in ``expected`` without records get a ``not run`` line.

    A ``Swept`` column (after ``Algorithm``) appears when some row has swept keys."""
    swept = any(r.swept for r in rows)
    header = HEADER[:4] + [SWEPT_COLUMN] + HEADER[4:] if swept else HEADER
    lines = [_md_row(header), "|" + "---|" * len(header)]
    lines += [_md_row(_row_cells(r, swept)) for r in rows]
    present = {r.name for r in rows} | {rec.name for r in rows for rec in r.records}
    for name in expected:
        if name not in present:
            lines.append(_md_row([name] + ["–"] * (len(header) - 2) + ["not run"]))
    return "\n".join(lines)


def render_sweep_table(group: Sequence[Row]) -> str:
    """Markdown table of one sweep: one column per swept key, then validation and test accuracies."""
    keys = list(group[0].swept)
    header = [f"`{k}`" for k in keys] + ["Seeds", "Epochs", "Best val acc %", "Strict test acc %",
                                         "PCX-protocol acc %", "s/epoch", "Flags"]
    lines = [_md_row(header), "|" + "---|" * len(header)]
    for row in group:
        lines.append(_md_row([format_value(row.swept.get(k, ABSENT)) for k in keys] + [
            str(len(row.used)), _epochs_text(row), row.val.format(), row.strict.format(), row.pcx.format(),
            _seconds_text(row), "; ".join(row.flags()) or "–"]))
    return "\n".join(lines)


PROTOCOL_NOTE = (
    "**Protocols.** *Strict*: per seed, the test accuracy at the epoch with the best validation "
    "accuracy (ties → earliest epoch; runs without a validation split use the last epoch, flagged "
    "`last epoch`); mean ± sample std (ddof=1) over all seeds. *PCX*: per seed, the best test "
    "accuracy over epochs; mean ± sample std (ddof=1) over the best n−2 seeds when n ≥ 7 (best 5 of "
    "7), otherwise over all seeds (flagged `n<7`). Diverged runs count in both protocols; running "
    "runs are excluded. Δ = ours − published reference, under the reference's protocol. "
    "s/epoch is the mean over seeds of each run's seconds per epoch.")

SWEEP_NOTE = (
    "**Swept keys.** Runs of one name form one row per combination of the config keys that differ "
    "between them (written as Hydra overrides in the `Swept` column); the seed and keys that never "
    "change what is computed (" + ", ".join(f"`{k}`" for k in NON_MATH_KEYS[1:]) + ") do not split "
    "rows. *Best val acc* is the best validation accuracy per seed (what to choose settings by); "
    "test accuracies are for reporting the chosen setting, not for choosing it.")


def _rel(path: Path, out_dir: Path | None) -> str:
    return Path(os.path.relpath(path, out_dir) if out_dir else str(path)).as_posix()


def _images(paths: Sequence[Path], out_dir: Path | None) -> list[str]:
    out = []
    for p in paths:
        out += [f"![{p.stem}]({_rel(p, out_dir)})", ""]
    return out


def render_markdown(rows: Sequence[Row], *, command: str, title: str = "pcjax results",
                    expected: Sequence[str] = (), plots: Sequence[Path] = (),
                    out_dir: Path | None = None) -> str:
    """Full results document: generated-file notice, table, protocol note, one section per sweep
    (its table and plot), the other plots, run list."""
    parts = [f"# {title}", "",
             f"<!-- GENERATED FILE - do not edit by hand. Regenerate with: {command} -->",
             f"*This file is generated by `{command}`; do not edit it by hand.*", "",
             render_table(rows, expected), "", PROTOCOL_NOTE, ""]
    plots = [Path(p) for p in plots]
    groups = sweep_groups(rows)
    if groups:
        parts += [SWEEP_NOTE, "", "## Sweeps", ""]
        by_name = {p.name: p for p in plots}
        for group, fname in zip(groups, _sweep_file_names(groups)):
            g = group[0]
            parts += [f"### {g.name} ({g.dataset} / {g.model} / {g.algorithm})", "",
                      render_sweep_table(group), ""]
            if fname in by_name:
                parts += _images([by_name[fname]], out_dir)
    other = [p for p in plots if not p.name.startswith("sweep_")]
    if other:
        parts += ["## Plots", ""]
        for kind, heading in (("acc_", "Test accuracy per epoch"), ("energy_", "Energy per layer"),
                              ("time_", "Seconds per epoch")):
            chosen = [p for p in other if p.name.startswith(kind)]
            if chosen:
                parts += [f"### {heading}", ""] + _images(chosen, out_dir)
        rest = [p for p in other if not p.name.startswith(("acc_", "energy_", "time_"))]
        parts += _images(rest, out_dir)
    swept = any(r.swept for r in rows)
    parts += ["## Runs", "",
              "| Row |" + (" Swept |" if swept else "") + " Seed | Status | Epochs | Strict % | Best test % | Commit | Record |",
              "|---|" + ("---|" if swept else "") + "---|---|---|---|---|---|---|"]
    for row in rows:
        for r in row.records:
            s, label = strict_accuracy(r)
            b = pcx_accuracy(r)
            strict_text = ('–' if s is None else f'{100 * s:.2f}') + (' (last epoch)' if label == 'last epoch' else '')
            parts.append(_md_row([row.name, *([row.swept_text or "–"] if swept else []), r.seed, r.status,
                                  len(r.epochs), strict_text, '–' if b is None else f'{100 * b:.2f}',
                                  (r.git_commit or '–')[:10], _rel(r.path, out_dir)]))
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------- plots

#: At most this many lines share one accuracy figure (more go onto further pages).
MAX_LINES = 10
#: Per-layer energy plots with more layers than this use a colour bar instead of a legend.
MAX_LAYER_LEGEND = 8


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend state; PNG via Agg

    return Figure(figsize=(width, height), layout="constrained")


def _setting_slug(row: Row, limit: int = 100) -> str:
    """The swept values as a file-name part; a long one (an Optuna trial) is shortened with a hash."""
    text = _slug(row.swept_text)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 11]}_{hashlib.sha1(row.swept_text.encode()).hexdigest()[:10]}"


def _epoch_axis(ax: Any, epochs: Iterable[int]) -> None:
    """Integer epoch ticks; a single epoch is centred instead of spread over fractional ticks."""
    ax.xaxis.get_major_locator().set_params(integer=True)
    seen = sorted(set(epochs))
    if len(seen) == 1:
        ax.set_xlim(seen[0] - 0.5, seen[0] + 0.5)
        ax.set_xticks(seen)


def _unique_path(out_dir: Path, stem: str, fallback: str, written: Sequence[Path]) -> Path:
    path = out_dir / f"{stem}.png"
    return out_dir / f"{fallback}.png" if path in written else path


def _by_dataset_model(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    by_dm: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_dm[(row.dataset, row.model)].append(row)
    return dict(sorted(by_dm.items()))


def _pages(rows: Sequence[Row], size: int = MAX_LINES) -> list[list[Row]]:
    """Rows in name order, packed into pages of at most ``size``; the rows of one name (a sweep)
    stay on one page unless they alone fill more than a page."""
    by_name: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_name[row.name].append(row)
    pages: list[list[Row]] = []
    for name in sorted(by_name):
        group = by_name[name]
        if pages and len(pages[-1]) + len(group) <= size:
            pages[-1].extend(group)
            continue
        pages += [group[i:i + size] for i in range(0, len(group), size)]
    return pages


def _accuracy_per_epoch(row: Row) -> tuple[list[int], list[float], list[float]]:
    per_epoch: dict[int, list[float]] = defaultdict(list)
    for r in row.used:
        for e in r.epochs:
            if _finite(e.get("test_acc")):
                per_epoch[e["epoch"]].append(100 * e["test_acc"])
    xs = sorted(per_epoch)
    mean = [statistics.fmean(per_epoch[x]) for x in xs]
    std = [statistics.stdev(per_epoch[x]) if len(per_epoch[x]) > 1 else 0.0 for x in xs]
    return xs, mean, std


def plot_accuracy(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Test accuracy vs epoch (mean ± std band over seeds), one line per row, the legend beside the
    axes; per (dataset, model) ``acc_<dataset>_<model>.png`` and, beyond :data:`MAX_LINES` rows,
    further pages ``acc_<dataset>_<model>_2.png``, ..."""
    written = []
    for (dataset, model), group in _by_dataset_model(rows).items():
        pages = _pages([r for r in group if _accuracy_per_epoch(r)[0]])
        for number, page in enumerate(pages, 1):
            fig = _figure(10.0, max(4.0, 0.3 * len(page) + 1.5))
            ax = fig.add_subplot()
            for row in page:
                xs, mean, std = _accuracy_per_epoch(row)
                (line,) = ax.plot(xs, mean, marker="o", ms=3, ls="--" if is_backprop(row.algorithm) else "-",
                                  label=f"{row.label} (n={len(row.used)})")
                ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=line.get_color(), alpha=0.2)
            page_text = f", page {number} of {len(pages)}" if len(pages) > 1 else ""
            ax.set(xlabel="epoch", ylabel="test accuracy (%)",
                   title=f"{dataset} / {model}: test accuracy (mean ± std over seeds){page_text}")
            _epoch_axis(ax, (x for row in page for x in _accuracy_per_epoch(row)[0]))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                      title="row (seeds); dashed: backprop", title_fontsize="small")
            suffix = "" if number == 1 else f"_{number}"
            path = out_dir / f"acc_{_slug(dataset)}_{_slug(model)}{suffix}.png"
            fig.savefig(path, dpi=120)
            written.append(path)
    return written


def _trace_shape(trace: list[list[float]]) -> tuple[int, int]:
    return len(trace), max((len(t) for t in trace), default=0)


def _layer_colours(layers: int) -> list[Any]:
    from matplotlib import colormaps

    if layers <= 10:
        return [colormaps["tab10"](i) for i in range(layers)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(layers - 1, 1)) for i in range(layers)]


def _mean_curve(curves: Sequence[Sequence[float]], n: int) -> list[float]:
    out = []
    for i in range(n):
        vals = [c[i] for c in curves if i < len(c) and _finite(c[i])]
        y = statistics.fmean(vals) if vals else math.nan
        out.append(y if y > 0 else math.nan)  # log axis
    return out


def _energy_figure(row: Row, records: Sequence[Record], shape: tuple[int, int]) -> Any:
    steps, layers = shape
    per_epoch = [[(e["epoch"], e["layer_energy"]) for e in r.epochs
                  if isinstance(e.get("layer_energy"), list) and len(e["layer_energy"]) == layers] for r in records]
    epochs = sorted({ep for rec in per_epoch for ep, _ in rec})
    fig = _figure(11.0 if epochs else 6.5, 4.2)
    axes = fig.subplots(1, 2) if epochs else [fig.add_subplot()]
    colours = _layer_colours(layers)
    for layer in range(layers):
        ys = _mean_curve([[t[s][layer] if layer < len(t[s]) else math.nan for s in range(steps)]
                          for t in (r.inference_trace for r in records)], steps)
        axes[0].plot(range(steps), ys, color=colours[layer], label=f"layer {layer + 1}")
    axes[0].set(xlabel="inference step t", ylabel="energy (mean over the epoch's batches)",
                title=f"last epoch, T = {steps - 1}")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    if epochs:
        for layer in range(layers):
            curves = []
            for rec in per_epoch:
                at = dict(rec)
                curves.append([at[ep][layer] if ep in at else math.nan for ep in epochs])
            axes[1].plot(epochs, _mean_curve(curves, len(epochs)), marker="o", ms=3, color=colours[layer])
        axes[1].set(xlabel="epoch", ylabel=f"energy at t = T = {steps - 1}", title="per epoch, end of inference")
        _epoch_axis(axes[1], epochs)
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    if layers <= MAX_LAYER_LEGEND:
        axes[0].legend(fontsize="small", ncol=2)
    else:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        fig.colorbar(ScalarMappable(Normalize(1, layers), colormaps["viridis"]), ax=axes, label="layer")
    seeds = ", ".join(str(r.seed) for r in records)
    fig.suptitle(f"{row.label} ({row.algorithm}): energy per layer, mean of {len(records)} run(s) (seeds {seeds})",
                 fontsize="medium")
    return fig


def plot_energy(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Per-layer energy (log y) of each row with inference traces: over the inference steps of the
    last epoch (``inference_trace``) and, beside it, at the end of inference per epoch
    (``layer_energy``); mean over seeds.  ``energy_<row>[_<swept values>].png``; runs of a row
    whose traces have another shape (T + 1 steps x layers) get a figure of their own
    (``..._T<T>_L<layers>.png``), so no run with a trace is left out."""
    written: list[Path] = []
    for row in rows:
        buckets: dict[tuple[int, int], list[Record]] = {}
        for r in row.used:
            if r.inference_trace:
                buckets.setdefault(_trace_shape(r.inference_trace), []).append(r)
        for shape, records in buckets.items():
            if not shape[0] or not shape[1]:
                continue
            stem = f"energy_{_slug(row.name)}" + (f"_{_setting_slug(row)}" if row.swept else "")
            if len(buckets) > 1:
                stem += f"_T{shape[0] - 1}_L{shape[1]}"
            fig = _energy_figure(row, records, shape)
            path = _unique_path(out_dir, stem, f"{stem}_{_slug(row.dataset)}_{_slug(row.model)}_{_slug(row.algorithm)}",
                                written)
            fig.savefig(path, dpi=120)
            written.append(path)
    return written


def is_backprop(algorithm: str) -> bool:
    """Whether ``algorithm`` names the backprop baseline (``bp``, ``bp-*``, ``backprop``)."""
    a = algorithm.lower()
    return a == "bp" or a.startswith(("bp-", "bp_", "backprop"))


def plot_timing(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Seconds per epoch, PC vs BP horizontal bars (± std over seeds), one bar per row, one PNG per
    (dataset, model)."""
    from matplotlib.patches import Patch

    written = []
    for (dataset, model), group in _by_dataset_model(rows).items():
        group = sorted((r for r in group if r.seconds_per_epoch()), key=lambda r: r.name)  # stable: swept order kept
        if not group:
            continue
        fig = _figure(9.0, max(2.5, 0.28 * len(group) + 1.3))
        ax = fig.add_subplot()
        means = [statistics.fmean(r.seconds_per_epoch()) for r in group]
        for i, (row, mean) in enumerate(zip(group, means)):
            secs = row.seconds_per_epoch()
            ax.barh(i, mean, xerr=statistics.stdev(secs) if len(secs) > 1 else 0.0,
                    color="tab:gray" if is_backprop(row.algorithm) else "tab:blue", capsize=2)
            ax.annotate(f"{mean:.3g}", (mean, i), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize="x-small")
        if min(means) > 0 and max(means) / min(means) > 50:
            ax.set_xscale("log")
        ax.set_yticks(range(len(group)), [f"{r.label} ({r.algorithm})" for r in group], fontsize="small")
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
        ax.legend([Patch(color="tab:blue"), Patch(color="tab:gray")], ["PC family", "backprop"], fontsize="small")
        ax.set(xlabel="seconds / epoch", title=f"{dataset} / {model}: training time per epoch")
        path = out_dir / f"time_{_slug(dataset)}_{_slug(model)}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def _sweep_file_names(groups: Sequence[Sequence[Row]]) -> list[str]:
    names = Counter(g[0].name for g in groups)
    return [f"sweep_{_slug(g[0].name)}.png" if names[g[0].name] == 1 else
            f"sweep_{_slug(g[0].name)}_{_slug(g[0].dataset)}_{_slug(g[0].model)}_{_slug(g[0].algorithm)}.png"
            for g in groups]


_METRICS = (("val", "best validation acc %"), ("strict", "strict test acc %"))


def _positions(values: Sequence[Any]) -> tuple[list[float], list[Any] | None, bool]:
    """x positions of ``values``: the numbers themselves (log scale for wide positive ranges), or
    category indices with their tick labels."""
    if _numeric(values):
        lo, hi = min(values), max(values)
        return [float(v) for v in values], None, lo > 0 and hi / lo >= 20
    cats = sorted({_canon(v): v for v in values}.values(), key=_value_order)
    index = {_canon(v): i for i, v in enumerate(cats)}
    return [float(index[_canon(v)]) for v in values], cats, False


def _sweep_line(fig: Any, group: Sequence[Row], key: str) -> None:
    ax = fig.add_subplot()
    xs, cats, log = _positions([r.swept[key] for r in group])
    order = sorted(range(len(group)), key=lambda i: xs[i])
    for attr, label in _METRICS:
        pts = [(xs[i], getattr(group[i], attr)) for i in order if getattr(group[i], attr).mean is not None]
        if pts:
            ax.errorbar([x for x, _ in pts], [p.mean for _, p in pts], yerr=[p.std or 0.0 for _, p in pts],
                        marker="o", capsize=3, label=label)
    _sweep_axis(ax, key, cats, log)
    ax.legend(fontsize="small")


def _sweep_heatmap(fig: Any, group: Sequence[Row], keys: Sequence[str]) -> None:
    import numpy as np

    xs = sorted({_canon(r.swept[keys[0]]): r.swept[keys[0]] for r in group}.values(), key=_value_order)
    ys = sorted({_canon(r.swept[keys[1]]): r.swept[keys[1]] for r in group}.values(), key=_value_order)
    xi = {_canon(v): i for i, v in enumerate(xs)}
    yi = {_canon(v): i for i, v in enumerate(ys)}
    axes = fig.subplots(1, len(_METRICS))
    for ax, (attr, label) in zip(axes, _METRICS):
        grid = np.full((len(ys), len(xs)), np.nan)
        text: dict[tuple[int, int], str] = {}
        for row in group:
            j, i = yi[_canon(row.swept[keys[1]])], xi[_canon(row.swept[keys[0]])]
            res = getattr(row, attr)
            if res.mean is not None:
                grid[j, i] = res.mean
            text[(j, i)] = ("–" if res.mean is None else f"{res.mean:.2f}"
                            + ("" if res.std is None else f"\n± {res.std:.2f}")) + f"\nn={len(res.values)}"
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", origin="lower")
        finite = grid[np.isfinite(grid)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        for (j, i), t in text.items():
            dark = not np.isfinite(grid[j, i]) or hi == lo or (grid[j, i] - lo) / (hi - lo) < 0.6
            ax.text(i, j, t, ha="center", va="center", fontsize="x-small", color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
        ax.set_yticks(range(len(ys)), [format_value(v) for v in ys])
        ax.set(xlabel=keys[0], ylabel=keys[1], title=label)
        fig.colorbar(image, ax=ax, shrink=0.85)


def _sweep_scatter(fig: Any, group: Sequence[Row], keys: Sequence[str]) -> None:
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        xs, cats, log = _positions([r.swept[key] for r in group])
        for (attr, label), style in zip(_METRICS, ({"mfc": "none"}, {})):
            pts = [(x, getattr(r, attr).mean) for x, r in zip(xs, group) if getattr(r, attr).mean is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], "o", ls="none", label=label, **style)
        _sweep_axis(ax, key, cats, log)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")


def _sweep_axis(ax, key: str, cats, log: bool) -> None:
    """Label an accuracy-against-``key`` axis: category ticks or a log scale, labels, grid."""
    if cats is not None:
        ax.set_xticks(range(len(cats)), [format_value(c) for c in cats])
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=key, ylabel="accuracy (%)")
    ax.grid(alpha=0.3)


def plot_sweeps(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Accuracy against the swept keys, one PNG per sweep (``sweep_<name>.png``): best validation
    and strict test accuracy (mean ± std over seeds) as a line plot for one swept key, as two
    heatmaps for two keys on a grid, and one scatter panel per key otherwise."""
    written = []
    groups = sweep_groups(rows)
    for group, fname in zip(groups, _sweep_file_names(groups)):
        keys = list(group[0].swept)
        n_x = len({_canon(r.swept[keys[0]]) for r in group})
        n_y = len({_canon(r.swept[keys[-1]]) for r in group})
        if len(keys) == 1:
            fig = _figure(6.5, 4.2)
            _sweep_line(fig, group, keys[0])
        elif len(keys) == 2 and n_x <= 12 and n_y <= 12 and n_x * n_y <= 2 * len(group):
            fig = _figure(max(9.0, 1.6 * n_x * 2 + 3), max(3.8, 0.7 * n_y + 2))
            _sweep_heatmap(fig, group, keys)
        else:
            ncols, nrows = min(3, len(keys)), math.ceil(len(keys) / 3)
            fig = _figure(4.2 * ncols, 3.6 * nrows + 0.6)
            _sweep_scatter(fig, group, keys)
        g = group[0]
        seeds = sorted({len(r.used) for r in group})
        fig.suptitle(f"{g.name} ({g.dataset} / {g.model} / {g.algorithm}): {len(group)} settings, "
                     f"{'-'.join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds))} seed(s) each",
                     fontsize="medium")
        path = out_dir / fname
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def make_plots(rows: Sequence[Row], out_dir: str | Path) -> list[Path]:
    """Write all plots (accuracy, energy traces, timing, sweeps) into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return plot_accuracy(rows, out) + plot_energy(rows, out) + plot_timing(rows, out) + plot_sweeps(rows, out)


def replace_marked_block(path: str | Path, marker: str, command: str, text: str) -> None:
    """Write ``text`` into the markdown file ``path`` between ``<!-- {marker}:start -->`` and
    ``<!-- {marker}:end -->`` (appended when the markers are absent), under a line naming the
    ``command`` that generated it; the rest of the file is kept as it is."""
    path = Path(path)
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n<!-- generated by `{command}`; do not edit by hand -->\n\n{text}{end}"
    body = path.read_text() if path.exists() else ""
    if start in body:
        body = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body + ("\n" if body and not body.endswith("\n\n") else "") + block + "\n"
    path.write_text(body)
