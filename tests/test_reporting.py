"""Run records, evaluation protocols, markdown table, plots and the tables.py CLI."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from pcjax.reporting import (
    Record,
    RecordError,
    group_rows,
    load_records,
    make_plots,
    pcx_protocol,
    render_table,
    strict_accuracy,
    strict_protocol,
)

ROOT = Path(__file__).resolve().parents[1]


def make_record(name, algorithm, seed, epochs, *, status="complete", trace=None, reference=None,
                device="cpu", dataset="mnist", model="mlp"):
    """A schema-1 record dict; ``epochs`` is a list of (val_acc, test_acc) pairs."""
    return {
        "schema": 1, "name": f"{name}_seed{seed}", "dataset": dataset, "model": model,
        "algorithm": algorithm, "seed": seed, "config": {"seed": seed}, "reference": reference,
        "hardware": {"device_kind": device, "backend": "cpu"}, "git_commit": "abc123",
        "status": status,
        "epochs": [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_energy": 2.0, "val_acc": v,
                    "test_acc": t, "seconds": 2.0 + seed} for i, (v, t) in enumerate(epochs)],
        "inference_trace": trace,
        "summary": {"test_acc": epochs[-1][1], "seconds_per_epoch": 2.0 + seed, "compile_seconds": 1.0},
    }


def write_record(root: Path, data: dict) -> Path:
    run = root / data["name"]
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps(data))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """3 seeds x 2 algorithms; in the PC runs the best-val epoch is not the best-test epoch."""
    root = tmp_path / "multirun"
    trace = [[10.0 / (t + 1), 5.0 / (t + 1), 0.0 if t > 3 else 1.0] for t in range(6)]
    ref = {"value": 98.0, "source": "PCX (Pinchetti et al. 2025)", "protocol": "pcx"}
    pc = {0: [(0.90, 0.95), (0.97, 0.93), (0.96, 0.96)],
          1: [(0.91, 0.94), (0.98, 0.92), (0.98, 0.97)],   # val tie -> earliest (epoch 2)
          2: [(0.92, 0.94), (0.99, 0.91), (0.95, 0.98)]}
    for seed, epochs in pc.items():
        write_record(root / "pc", make_record("mnist_mlp_pc_se", "pc-se", seed, epochs,
                                              trace=trace, reference=ref))
    for seed in range(3):
        acc = 0.95 + 0.01 * seed
        write_record(root / "bp", make_record("mnist_mlp_bp", "bp", seed, [(acc, acc), (acc, acc)],
                                              status="diverged" if seed == 2 else "complete"))
    return root


def test_strict_picks_best_val_epoch(runs: Path) -> None:
    records = load_records([runs])
    assert len(records) == 6
    pc = next(r for r in group_rows(records) if r.algorithm == "pc-se")
    assert pc.name == "mnist_mlp_pc_se"  # seed suffix stripped
    picks = [strict_accuracy(r) for r in pc.records]
    assert [p[0] for p in picks] == [0.93, 0.92, 0.91]  # not the best test accs 0.96, 0.97, 0.98
    assert all(label == "best val" for _, label in picks)
    result = strict_protocol(pc.records)
    assert result.mean == pytest.approx(92.0)
    assert result.std == pytest.approx(1.0)  # sample std (ddof=1) of 93, 92, 91
    assert result.format() == "92.00 ± 1.00"


def test_strict_without_val_uses_last_epoch(tmp_path: Path) -> None:
    data = make_record("x", "pc-se", 0, [(None, 0.5), (None, 0.9), (None, 0.7)])
    rec = Record.from_dict(data, tmp_path / "record.json")
    assert strict_accuracy(rec) == (0.7, "last epoch")
    assert "last epoch" in strict_protocol([rec]).format()


def test_pcx_best_5_of_7_by_hand(tmp_path: Path) -> None:
    best = [0.90, 0.95, 0.93, 0.97, 0.91, 0.96, 0.94]
    recs = [Record.from_dict(make_record("r", "pc-se", s, [(0.5, b - 0.05), (0.5, b), (0.5, b - 0.01)]),
                             tmp_path / f"{s}.json") for s, b in enumerate(best)]
    result = pcx_protocol(recs)
    # drop the two worst (90, 91): mean of 97, 96, 95, 94, 93 = 95; sample std = sqrt(2.5)
    assert result.values == pytest.approx([97, 96, 95, 94, 93])
    assert result.mean == pytest.approx(95.0)
    assert result.std == pytest.approx(statistics.stdev([97, 96, 95, 94, 93]))
    assert result.format() == "95.00 ± 1.58 (best 5 of 7)"
    few = pcx_protocol(recs[:3])
    assert few.mean == pytest.approx(100 * (0.90 + 0.95 + 0.93) / 3)
    assert "n<7" in few.format()


def test_table_and_plots(runs: Path, tmp_path: Path) -> None:
    rows = group_rows(load_records([runs]))
    table = render_table(rows, expected=["mnist_mlp_pc_se", "cifar10_vgg_pc"])
    assert "92.00 ± 1.00" in table                      # strict, PC
    assert "97.00 ± 1.00 (n<7)" in table                # PCX, PC: best tests 96, 97, 98
    assert "98.00 (PCX (Pinchetti et al. 2025))" in table and "-1.00 (pcx)" in table
    assert "1 diverged" in table
    assert "| cifar10_vgg_pc |" in table and "not run" in table
    assert table.count("not run") == 1
    plots = make_plots(rows, tmp_path / "plots")
    names = sorted(p.name for p in plots)
    assert "acc_mnist_mlp.png" in names and "time_mnist_mlp.png" in names
    assert any(n.startswith("energy_") for n in names)
    for p in plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_running_runs_excluded_and_flagged(tmp_path: Path) -> None:
    recs = [Record.from_dict(make_record("r", "pc-se", s, [(0.9, 0.9)], status=st), tmp_path / f"{s}.json")
            for s, st in enumerate(["complete", "complete", "running"])]
    (row,) = group_rows(recs)
    assert len(row.used) == 2 and "1 running (excluded)" in row.flags()


def test_invalid_records_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(RecordError, match=str(bad.name)):
        load_records([bad.parent])
    bad.write_text(json.dumps({"schema": 1, "name": "x", "model": "mlp", "algorithm": "bp", "epochs": []}))
    with pytest.raises(RecordError, match="dataset"):
        load_records([bad])
    with pytest.raises(RecordError, match="no record.json"):
        (tmp_path / "empty").mkdir()
        load_records([tmp_path / "empty"])


def test_cli_end_to_end(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "README.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tables.py"), str(runs), "--out", str(out),
         "--expect", "mnist_mlp_pc_se,fashion_mlp_pc", "--title", "Test results"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "92.00 ± 1.00" in proc.stdout and "fashion_mlp_pc" in proc.stdout
    text = out.read_text()
    assert text.startswith("# Test results")
    assert "do not edit it by hand" in text and "python experiments/tables.py" in text
    assert "(plots/acc_mnist_mlp.png)" in text
    assert (out.parent / "plots" / "acc_mnist_mlp.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_readme_gets_only_the_summary_rows_and_the_out_file_every_row(runs: Path, tmp_path: Path) -> None:
    from pcjax.tables import main

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    out = tmp_path / "results" / "README.md"
    assert main([str(runs), "--out", str(out), "--readme", str(readme), "--readme-rows", "*_pc_se"]) == 0
    text = readme.read_text()
    assert "| mnist_mlp_pc_se |" in text and "mnist_mlp_bp" not in text and "old" not in text
    assert text.startswith("intro\n") and text.endswith("rest\n")
    full = out.read_text()
    assert "mnist_mlp_pc_se" in full and "mnist_mlp_bp" in full
