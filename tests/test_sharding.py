"""Data parallelism (trainer.devices): the same training on 4 forced host devices as on one.

tests/conftest.py fixes the host device count at 1 for this process, so the multi-device checks run
in subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/sharding_check.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcjax.data import load_dataset
from pcjax.errors import ConfigError
from pcjax.experiment import build, to_dict
from pcjax.config import Config, validate_config
from pcjax.training import TrainerConfig, fit

ROOT = Path(__file__).resolve().parents[1]
FOUR = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def _env(**extra):
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, WANDB_MODE="offline", WANDB_SILENT="true", **extra)


def _check(*cases, cwd) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "sharding_check.py"), *cases], cwd=cwd,
                          env=_env(**FOUR), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_train_like_one(tmp_path):
    """PC, ePC and BP on an MLP and PC on a convnet: the same per-epoch losses and final parameters on
    4 devices (batch split over them) as on 1, to float32 rounding; a run checkpointed on 4 devices
    resumes on 1 and continues like an uninterrupted 1-device run; bad settings fail clearly."""
    out = _check("pc:mlp", "epc:mlp", "bp:mlp", "pc:cnn", f"resume:{tmp_path}", "errors", cwd=tmp_path)
    for case in ("pc:mlp", "epc:mlp", "bp:mlp", "pc:cnn", f"resume:{tmp_path}"):
        r = out[case]
        np.testing.assert_allclose(r["losses_4"], r["losses_1"], rtol=1e-5, err_msg=case)
        assert r["param_abs"] <= 2e-5, (case, r)
        assert r["devices"] == 4, (case, r)
    assert "'data': 4" in out["pc:mlp"]["sharding"]  # the parameters live on the 4-device mesh
    assert out[f"resume:{tmp_path}"]["resumed_from"] == 1 and out[f"resume:{tmp_path}"]["resumed_devices"] == 1
    errors = out["errors"]
    assert "trainer.batch_size=30 does not split evenly over trainer.devices=4" in errors["batch"]
    assert "trainer.batch_size=28 or 32" in errors["batch"]
    assert "trainer.eval_batch_size=1001" in errors["eval"] and "1000 or 1004" in errors["eval"]
    assert "trainer.devices=8 but only 4" in errors["too_many"] and "trainer.devices=all" in errors["too_many"]


def test_one_device_process_rejects_more_devices():
    c = to_dict(Config())
    c["trainer"]["progress"] = False
    data = load_dataset("digits", limit_train=128)
    model, algo = build(c, 3, data.image_shape, data.num_classes)
    with pytest.raises(ConfigError, match=r"trainer.devices=2 but only 1 .*device"):
        fit(algo, model, data, TrainerConfig(epochs=1, batch_size=32, progress=False, devices=2))
    with pytest.raises(ConfigError, match="trainer.devices"):
        fit(algo, model, data, TrainerConfig(epochs=1, batch_size=32, progress=False, devices="many"))
    for bad in (0, "two", True):
        with pytest.raises(ConfigError, match="trainer.devices"):
            validate_config({**c, "trainer": {**c["trainer"], "devices": bad}})
    validate_config({**c, "trainer": {**c["trainer"], "devices": "all"}})


FAST = ["trainer.epochs=1", "trainer.progress=false", "model.width=32", "model.depth=2", "trainer.checkpoint=false",
        "dataset.limit_train=256"]


def _cli(args, cwd, **env):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd,
                          env=_env(**env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_cli_trains_on_four_devices(tmp_path):
    line = json.loads(_cli(["trainer.devices=4", "trainer.batch_size=32", *FAST], tmp_path, **FOUR)
                      .stdout.strip().splitlines()[-1])
    assert line["devices"] == 4 and line["epochs"] == 1
    record = json.loads((Path(line["run_dir"]) / "record.json").read_text())
    assert record["hardware"]["devices"] == 4 and record["config"]["trainer"]["devices"] == 4


def _sqlalchemy_below_2() -> bool:
    try:
        import sqlalchemy
    except ImportError:
        return False
    return int(sqlalchemy.__version__.split(".")[0]) < 2


def test_optuna_study_persists_and_resumes(tmp_path):
    """conf/sweep/optuna.yaml stores the study in <sweep dir>/optuna.db: a second run of the same sweep
    continues the study (4 trials after two runs of 2)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    if not _sqlalchemy_below_2():
        pytest.skip('optuna<3 (hydra-optuna-sweeper) needs SQLAlchemy<2: pip install "sqlalchemy<2" "alembic<1.14"')
    args = ["-m", "+sweep=optuna", "hydra.sweeper.n_trials=2", "hydra.sweep.dir=optuna", *FAST]
    _cli(args, tmp_path)
    _cli(args, tmp_path)
    db = tmp_path / "optuna" / "optuna.db"
    with sqlite3.connect(db) as con:
        (trials, studies), = con.execute("select count(*), count(distinct study_id) from trials").fetchall()
    assert (trials, studies) == (4, 1)
