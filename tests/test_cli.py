"""The Hydra entry point: default run, multirun over seeds + generated table, wandb offline, config errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.epochs=2", "trainer.progress=false", "model.width=32", "model.depth=2"]


def _run(args, cwd, check=True, wandb="disabled"):
    env = dict(os.environ, WANDB_MODE=wandb, WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_default_run_prints_json_summary_last(tmp_path):
    proc = _run(FAST, tmp_path)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("dataset", "model", "algorithm", "epochs", "test_acc", "val_acc", "seconds_per_epoch"):
        assert key in summary
    assert summary["dataset"] == "digits" and summary["algorithm"].startswith("bpc")
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["epochs"] == 2
    assert (Path(summary["run_dir"]) / "record.json").exists()


def test_multirun_two_seeds_and_table(tmp_path):
    _run(["-m", "seed=0,1", "algorithm=pc", "energy=gaussian", "lalr=constant", *FAST], tmp_path)
    records = list((tmp_path / "multirun").rglob("record.json"))
    assert len(records) == 2
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), str(tmp_path / "multirun"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "±" in text and "digits" in text and "| 2 |" in text.replace("  ", " ")


def test_default_run_leaves_named_offline_wandb_run(tmp_path):
    """wandb is a default tracker (offline): a readable name, a group, tags, and per-inference-step energies."""
    from test_tracking import read_wandb_records

    _run(["algorithm.T=3", *FAST], tmp_path, wandb="offline")
    (offline,) = tmp_path.rglob("offline-run-*")
    (log,) = offline.glob("*.wandb")
    records = read_wandb_records(log)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"][:1]
    assert run.display_name == "digits_mlp_bpc algorithm.T=3 trainer.epochs=2 trainer.progress=false " \
                               "model.width=32 model.depth=2 seed0"
    assert run.run_group == "digits_mlp_bpc"
    assert {"digits", "mlp"} <= set(run.tags) and any(t.startswith("bpc") for t in run.tags)
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert len(history) == 2 and all("train_loss" in h for h in history)
    # per-layer energy at every inference step (T + 1 rows; a step column + 3 nodes): a wandb table + plot
    table = {k.split("/", 1)[1]: v for k, v in history[-1].items() if k.startswith("inference_trace/")}
    assert table["_type"] == "table-file" and table["nrows"] == 3 + 1 and table["ncols"] == 1 + 3
    assert any(k.startswith("inference_trace_plot_table/") for k in history[-1])
    assert list(tmp_path.rglob("metrics.jsonl"))


def test_typo_in_config_key_names_the_key(tmp_path):
    proc = _run(["algorithm.latnet.lr=0.1"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "latnet" in proc.stderr


def test_out_of_range_value_names_the_field(tmp_path):
    proc = _run(["trainer.val_fraction=1.5", *FAST], tmp_path, check=False)
    assert proc.returncode != 0
    assert "trainer.val_fraction" in proc.stderr


def test_unknown_choice_lists_valid_ones(tmp_path):
    proc = _run(["lalr.rule=fancy", *FAST], tmp_path, check=False)
    assert proc.returncode != 0
    assert "fancy" in proc.stderr and "error_normalised" in proc.stderr
    proc = _run(["model.act=swishy", *FAST], tmp_path, check=False)
    assert "swishy" in proc.stderr and "gelu" in proc.stderr


def test_optuna_sweep_maximises_validation_accuracy(tmp_path):
    proc = _run(["-m", "+sweep=optuna", "hydra.sweeper.n_trials=2", *FAST], tmp_path)
    assert "Best value" in proc.stdout + proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("record.json")]
    assert len(records) == 2


def _first_value(arg: str) -> str:
    """A sweep override ``k=a,b,c`` -> ``k=a`` (lists in brackets are kept)."""
    key, _, value = arg.partition("=")
    return arg if "[" in value else f"{key}={value.split(',')[0]}"


SHAPES = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10), "fashion_mnist": ((28, 28, 1), 10),
          "cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100), "tiny_imagenet": ((64, 64, 3), 200),
          "synthetic": ((8, 8, 1), 10)}


def _build(build, c, abstract: bool = False):
    """Build the model and algorithm of a composed config (no data needed); ``abstract`` runs every
    construction step on shapes only (jax.eval_shape: no initialiser numbers, several times faster)."""
    import jax

    shape, classes = SHAPES[c["dataset"]["name"]]
    if abstract:
        jax.eval_shape(lambda: build(c, 2, shape, classes) and None)
    else:
        build(c, 2, shape, classes)


def test_every_command_line_in_the_docs_composes(monkeypatch):
    """Each `python experiments/train.py ...` line in README.md and docs/ names only existing config
    keys and groups (a misspelt or unwired option fails here, not in a user's shell; the plugins a
    line names are loaded first, as the command line does), and builds a model and algorithm; every
    generated experiment config composes, passes the schema and value checks and builds too."""
    import re
    import shlex

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from conftest import isolated_registries

    from pcjax.config import check_overrides, check_schema, register_configs, validate_config
    from pcjax.experiment import build
    from pcjax.plugins import load_plugins, plugins_from_overrides

    register_configs()
    lines = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")  # shell line continuations
        lines += re.findall(r"^python experiments/train\.py ([^#\n]*)", text, flags=re.M)
    assert len(lines) >= 10
    # launchers and sweepers are composed by their own tests (test_cluster_sweep.py, the Optuna tests);
    # "&" starts a line's process in the background
    skip = ("-m", "...", "+sweep=", "hydra/launcher=", "hydra.launcher.", "&")
    experiments = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    assert len(experiments) >= 60
    with isolated_registries(monkeypatch, root_on_path=False), \
            initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for line in lines:
            args = [_first_value(a) for a in shlex.split(line) if not a.startswith(skip)]
            load_plugins(plugins_from_overrides(args))
            check_overrides(args)  # the command line's own check before Hydra: no false alarm on a documented line
            c = OmegaConf.to_container(compose("config", overrides=args), resolve=True)
            _build(build, c)
        for name in experiments:
            c = OmegaConf.to_container(compose("config", overrides=[f"experiment={name}"]), resolve=True)
            check_schema(c)
            validate_config(c)
            _build(build, c, abstract=True)  # the built-in models (a flax model needs a concrete key)
