"""pcjax.load_run / ``pcjax eval``: a trained run loaded back from its directory predicts and evaluates as
training did (the same compiled evaluation, the same state), and a run that cannot be loaded is named."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tiny_config

import pcjax as pj


def _train(run_dir, *, algorithm: str = "pc", checkpoint: bool = True) -> dict:
    c = tiny_config(epochs=2)
    c.algorithm.name = algorithm
    c.model.depth = 2
    c.trainer.checkpoint = checkpoint
    pj.train(c, run_dir=str(run_dir))
    return json.loads((run_dir / "record.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    return run_dir, _train(run_dir)


def test_evaluate_reproduces_the_recorded_accuracies(trained):
    run_dir, record = trained
    run = pj.load_run(run_dir)
    assert run.epoch == 2 and run.config == record["config"]
    last = record["epochs"][-1]
    assert run.evaluate("test") == last["test_acc"] == run.recorded("test_acc")
    assert run.evaluate("val") == last["val_acc"]
    # the checkpoint is the last epoch's state, not the first's
    first = record["epochs"][0]
    assert (first["test_acc"], first["val_acc"]) != (last["test_acc"], last["val_acc"])


def test_predict_agrees_with_evaluate_and_checks_shapes(trained):
    run_dir, record = trained
    run = pj.load_run(run_dir)
    x, y = run.split("test")
    logits = run.predict(x, batch_size=37)  # batches that do not divide the split
    assert logits.shape == (x.shape[0], run.data.num_classes)
    assert np.mean(logits.argmax(-1) == y) == pytest.approx(run.evaluate("test"), abs=1e-6)
    np.testing.assert_allclose(run.predict(x[:5]), logits[:5], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"predict expects images of shape"):
        run.predict(x[:, :3])
    n_val = len(run.split("val")[0])
    assert n_val + len(run.split("train")[0]) == record["config"]["dataset"]["limit_train"]
    with pytest.raises(ValueError, match="unknown split"):
        run.split("holdout")


def test_backprop_run_loads_too(tmp_path):
    record = _train(tmp_path / "bp", algorithm="bp")
    assert pj.load_run(tmp_path / "bp").evaluate("test") == record["epochs"][-1]["test_acc"]


def test_missing_record_or_checkpoint_is_named(tmp_path):
    with pytest.raises(pj.RunLoadError, match="record.json not found"):
        pj.load_run(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.json").write_text("{not json")
    with pytest.raises(pj.RunLoadError, match="not valid JSON"):
        pj.load_run(tmp_path / "bad")
    _train(tmp_path / "nock", checkpoint=False)
    with pytest.raises(pj.RunLoadError, match="no checkpoint .*trainer.checkpoint=true"):
        pj.load_run(tmp_path / "nock")


def test_pcjax_eval_command(trained, tmp_path):
    run_dir, record = trained
    out = subprocess.run([sys.executable, "-m", "pcjax.cli", "eval", str(run_dir)], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    acc = 100 * record["epochs"][-1]["test_acc"]
    assert f"after epoch 2, test accuracy {acc:.2f} % (recorded for this epoch: {acc:.2f} %)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "pcjax.cli", "eval", str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and "record.json not found" in bad.stderr
