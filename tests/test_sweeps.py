"""Sweeps in the tables and plots: a Hydra grid becomes one row per setting, Optuna trials one row
each, swept keys are shown and plotted, energy figures keep every run, tables.py writes beside the
runs and does not overwrite tracked files."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcjax.reporting import (
    group_rows,
    load_records,
    make_plots,
    plot_energy,
    render_markdown,
    render_table,
    swept_keys,
)

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "experiments" / "tables.py"
PNG = b"\x89PNG\r\n\x1a\n"


def config(seed=0, T=8, lr=0.01, **extra):
    """A nested run config like the ones training stores (only a few fields)."""
    c = {"dataset": {"name": "mnist", "root": None, "download": True, "limit_train": None},
         "model": {"name": "mlp", "width": 128, "depth": 3},
         "algorithm": {"name": "pc", "T": T, "latent": {"name": "sgd", "lr": lr, "momentum": 0.5}},
         "optim": {"name": "adamw", "lr": 3e-4, "weight_decay": 1e-4},
         "trainer": {"epochs": 3, "batch_size": 128, "progress": False, "resume": False},
         "tracking": {"backends": ["jsonl"]}, "name": "mnist_mlp_pc_se", "seed": seed,
         "run_dir": f"multirun/x/seed{seed}_T{T}_lr{lr}", "plugins": []}
    for key, value in extra.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return c


def record(cfg, *, acc=0.9, layers=4, commit="abc123", status="complete", name=None):
    """A schema-1 record for ``cfg`` with three epochs and a (T + 1, layers) inference trace."""
    T = cfg["algorithm"]["T"]
    epochs = [{"epoch": e + 1, "train_loss": 1.0, "train_energy": 1.0, "val_acc": acc - 0.01 * (2 - e),
               "test_acc": acc - 0.01 * (2 - e) - 0.005, "seconds": 1.0,
               "layer_energy": [0.1 / (e + 1) / (layer + 1) for layer in range(layers)]} for e in range(3)]
    return {"schema": 1, "name": name or cfg["name"], "dataset": "mnist", "model": "mlp", "algorithm": "pc-se",
            "seed": cfg["seed"], "config": cfg, "reference": None,
            "hardware": {"device_kind": "cpu", "backend": "cpu"}, "git_commit": commit, "status": status,
            "epochs": epochs,
            "inference_trace": [[1.0 / (t + 1) / (layer + 1) for layer in range(layers)] for t in range(T + 1)],
            "summary": {"test_acc": epochs[-1]["test_acc"], "seconds_per_epoch": 1.0}}


def write(root: Path, records) -> Path:
    for i, data in enumerate(records):
        run = root / f"run{i}"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """``algorithm.T=4,8 algorithm.latent.lr=0.01,0.05 seed=0,1`` (8 runs, one name)."""
    recs = [record(config(seed, T, lr), acc=0.9 + 0.01 * (T == 8) + 0.02 * (lr == 0.05) + 0.001 * seed)
            for T, lr, seed in itertools.product((4, 8), (0.01, 0.05), (0, 1))]
    return write(tmp_path / "multirun", recs)


def test_grid_gives_one_row_per_setting_and_a_heatmap(grid: Path, tmp_path: Path) -> None:
    records = load_records([grid])
    assert swept_keys(records) == ["algorithm.T", "algorithm.latent.lr"]  # seed, run_dir aside
    rows = group_rows(records)
    assert len(rows) == 4
    assert [len(r.used) for r in rows] == [2, 2, 2, 2]
    assert [r.swept_text for r in rows] == [
        "algorithm.T=4, algorithm.latent.lr=0.01", "algorithm.T=4, algorithm.latent.lr=0.05",
        "algorithm.T=8, algorithm.latent.lr=0.01", "algorithm.T=8, algorithm.latent.lr=0.05"]
    assert not any(r.flags() for r in rows)  # no "duplicate seeds"
    table = render_table(rows)
    assert "| Swept |" in table and "| algorithm.T=8, algorithm.latent.lr=0.05 |" in table
    assert table.count("| mnist_mlp_pc_se |") == 4
    assert rows[3].strict.mean == pytest.approx(100 * (0.93 + 0.0005 - 0.005))
    plots = make_plots(rows, tmp_path / "plots")
    sweep = tmp_path / "plots" / "sweep_mnist_mlp_pc_se.png"
    assert sweep in plots and sweep.read_bytes()[:8] == PNG and sweep.stat().st_size > 1000
    energy = sorted(p.name for p in plots if p.name.startswith("energy_"))
    assert len(energy) == 4 and "energy_mnist_mlp_pc_se_algorithm.T_4_algorithm.latent.lr_0.01.png" in energy
    doc = render_markdown(rows, command="tables.py", plots=plots, out_dir=tmp_path)
    assert "## Sweeps" in doc and "(plots/sweep_mnist_mlp_pc_se.png)" in doc
    assert "| `algorithm.T` | `algorithm.latent.lr` | Seeds |" in doc
    assert "| 8 | 0.05 | 2 | 3 |" in doc


def test_optuna_trials_give_one_row_each(tmp_path: Path) -> None:
    trials = [(0.0123, 0.5, 3e-4, 5), (0.2, 0.1, 1e-3, 9), (0.051, 0.9, 7e-5, 12), (0.3, 0.0, 2e-3, 4),
              (0.007, 0.7, 5e-4, 7)]
    recs = [record(config(0, T, lr, **{"algorithm.latent.momentum": m, "optim.lr": wlr}), acc=0.8 + 0.02 * i)
            for i, (lr, m, wlr, T) in enumerate(trials)]
    rows = group_rows(load_records([write(tmp_path / "optuna", recs)]))
    assert len(rows) == len(trials) and all(len(r.used) == 1 and not r.flags() for r in rows)
    assert list(rows[0].swept) == ["algorithm.T", "algorithm.latent.lr", "algorithm.latent.momentum", "optim.lr"]
    assert "algorithm.latent.lr=0.0123" in render_table(rows)
    plots = make_plots(rows, tmp_path / "plots")
    assert tmp_path / "plots" / "sweep_mnist_mlp_pc_se.png" in plots
    assert len([p for p in plots if p.name.startswith("energy_")]) == len(trials)


def test_one_swept_key_line_plot_and_ignored_keys(tmp_path: Path) -> None:
    recs = [record(config(seed, 8, lr, **{"trainer.progress": bool(seed), "tracking.backends": ["wandb"] * seed,
                                          "dataset.root": f"/data{seed}"}))
            for lr in (0.01, 0.1, 0.5) for seed in (0, 1, 2)]
    rows = group_rows(load_records([write(tmp_path / "runs", recs)]))
    assert [r.swept_text for r in rows] == [f"algorithm.latent.lr={v}" for v in ("0.01", "0.1", "0.5")]
    assert all(len(r.used) == 3 for r in rows)
    assert (tmp_path / "p" / "sweep_mnist_mlp_pc_se.png") in make_plots(rows, tmp_path / "p")
    merged = group_rows(load_records([tmp_path / "runs"]), ignore=("seed", "run_dir", "trainer", "tracking",
                                                                   "dataset", "algorithm.latent.lr"))
    assert len(merged) == 1 and len(merged[0].used) == 9


def test_key_only_some_runs_have(tmp_path: Path) -> None:
    """Same commit: an added override splits rows; other commit: a new config field does not."""
    base = [record(config(s)) for s in (0, 1)]
    added = record(config(2, **{"algorithm.params": {"k": 2}}))
    rows = group_rows(load_records([write(tmp_path / "a", base + [added])]))
    assert len(rows) == 2 and rows[1].swept_text == "algorithm.params.k=2" and rows[0].swept_text == "algorithm.params.k=–"
    newer = record(config(2, **{"algorithm.unroll": "auto"}), commit="def456")
    rows = group_rows(load_records([write(tmp_path / "b", base + [newer])]))
    assert len(rows) == 1 and len(rows[0].used) == 3


def test_energy_plots_keep_runs_with_another_trace_shape(tmp_path: Path) -> None:
    """Runs whose T differs are rows of their own; runs of one row with another trace shape (e.g.
    a deeper model recorded by other code) get a figure of their own instead of being dropped."""
    recs = [record(config(0, T)) for T in (4, 8, 12)]
    recs += [record(config(0, 8, name="other"), layers=4, commit="c1"),
             record(config(1, 8, name="other"), layers=6, commit="c2")]
    rows = group_rows(load_records([write(tmp_path / "runs", recs)]))
    assert len(rows) == 4
    names = sorted(p.name for p in plot_energy(rows, tmp_path))
    assert names == ["energy_mnist_mlp_pc_se_algorithm.T_12.png", "energy_mnist_mlp_pc_se_algorithm.T_4.png",
                     "energy_mnist_mlp_pc_se_algorithm.T_8.png", "energy_other_T8_L4.png", "energy_other_T8_L6.png"]


def _tables(*args, cwd):
    return subprocess.run([sys.executable, str(TABLES), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_tables_cli_writes_beside_the_runs_and_keeps_tracked_files(grid: Path, tmp_path: Path) -> None:
    proc = _tables(grid, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = grid / "tables" / "README.md"
    assert "| Swept |" in proc.stdout and out.is_file()
    assert (grid / "tables" / "plots" / "sweep_mnist_mlp_pc_se.png").stat().st_size > 1000
    assert "(plots/sweep_mnist_mlp_pc_se.png)" in out.read_text()
    again = _tables(grid, "--no-write", cwd=tmp_path)  # the tables folder holds no records: same rows
    assert again.returncode == 0 and again.stdout == proc.stdout

    # a tracked tables/README.md is not overwritten by default, only when --out names it
    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", str(out)], check=True)
    out.write_text("committed\n")
    refused = _tables(grid, cwd=tmp_path)
    assert refused.returncode == 2 and "--out" in refused.stderr and out.read_text() == "committed\n"
    forced = _tables(grid, "--out", out, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert out.read_text().startswith("# pcjax results")


def test_multirun_grid_end_to_end(tmp_path: Path) -> None:
    """A real 2 x 2 Hydra grid on digits (one seed, one epoch) -> 4 rows and a heatmap."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    args = ["-m", "algorithm=pc", "energy=gaussian", "lalr=constant", "algorithm.T=2,4",
            "algorithm.latent.lr=0.05,0.1", "seed=0", "trainer.epochs=1", "trainer.progress=false",
            "trainer.checkpoint=false", "model.width=16", "model.depth=1"]
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "multirun").rglob("record.json"))) == 4
    table = _tables(tmp_path / "multirun", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    body = [ln for ln in table.stdout.splitlines() if ln.startswith("| digits_mlp_pc")]
    assert len(body) == 4, table.stdout
    assert {ln.split(" | ")[4] for ln in body} == {
        f"algorithm.T={T}, algorithm.latent.lr={lr}" for T in (2, 4) for lr in (0.05, 0.1)}
    assert all(ln.split(" | ")[5] == "1" for ln in body)  # one seed each
    assert (tmp_path / "multirun" / "tables" / "plots" / "sweep_digits_mlp_pc.png").is_file()
