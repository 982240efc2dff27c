"""trainer.replicas=K: K seeds trained as one vmapped program equal K separate runs, write K records that
the tables read as K seeds, resume exactly, and refuse what they do not support.

Tolerance: a replica equals the separate run with its seed up to float32 rounding. Under ``vmap`` every
matrix product becomes a batched one, which XLA:CPU may sum in another order (one ulp, ~1.2e-7
relative, per operation), and accuracies are divided by a batched division; after the 6 steps of these
runs the parameters differ by at most 1.4e-7 relative to their largest entry (measured, 2-core CPU). So
parameters are compared with rtol=1e-5, atol=1e-6 and metrics with rel=1e-5: ~100x the rounding seen,
while a wrong initialisation key, shuffle or validation split changes them by O(1).
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import pcjax as pj
from conftest import tiny_config
from pcjax.checkpoint import read_checkpoint
from pcjax.data import load_dataset, split_validation
from pcjax.errors import DivergenceError, RunInterrupted
from pcjax.experiment import run_experiment
from pcjax.replicas import GroupStore, check_replicas, split_indices
from pcjax.reporting import group_rows, load_records

SEED, K, EPOCHS = 5, 3, 2
METRICS = ("train_loss", "train_energy", "train_acc", "val_acc", "test_acc")


def _config(replicas=1, seed=SEED, epochs=EPOCHS, **trainer):
    c = tiny_config(epochs)
    c.seed, c.trainer.replicas = seed, replicas
    for key, value in trainer.items():
        setattr(c.trainer, key, value)
    return c


def _arrays(path: Path) -> dict:
    """Every stored array of a checkpoint file, by its leaf path."""
    header, payload = read_checkpoint(path)
    specs = {leaf["path"]: leaf for leaf in header["fingerprint"]["leaves"] if leaf["kind"] != "static"}
    return {e["path"]: np.frombuffer(payload[e["offset"]:e["offset"] + e["nbytes"]],
                                     dtype=specs[e["path"]]["dtype"]).reshape(specs[e["path"]]["shape"])
            for e in header["arrays"]}


def _final(run_dir: Path) -> dict:
    return _arrays(run_dir / (run_dir / "latest").read_text().strip())


def _same_metrics(a: dict, b: dict) -> None:
    assert len(a["epochs"]) == len(b["epochs"])
    for ea, eb in zip(a["epochs"], b["epochs"]):
        for key in METRICS:
            assert ea[key] == pytest.approx(eb[key], rel=1e-5, abs=1e-7), (key, ea["epoch"])
        np.testing.assert_allclose(ea["layer_energy"], eb["layer_energy"], rtol=1e-5, atol=1e-7)


def _same_params(group: dict, k: int, single: dict) -> None:
    assert set(group) == set(single)
    for path, value in single.items():
        np.testing.assert_allclose(group[path][k], value, rtol=1e-5, atol=1e-6, err_msg=path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-replica group (seeds 5, 6, 7; 2 epochs) and the three separate runs with those seeds."""
    root = tmp_path_factory.mktemp("replicas")
    group = run_experiment(_config(K), run_dir=root / "group")
    singles = [run_experiment(_config(seed=SEED + k), run_dir=root / f"single{k}") for k in range(K)]
    return root, group, singles


def test_replicas_equal_separate_runs(runs):
    root, group, singles = runs
    params = _final(root / "group")
    for k, single in enumerate(singles):
        record = json.loads((root / "group" / f"seed{SEED + k}" / "record.json").read_text())
        _same_metrics(record, single)
        _same_params(params, k, _final(root / f"single{k}"))


def test_each_replica_writes_a_normal_run_record(runs):
    root, group, singles = runs
    assert group["seeds"] == [SEED, SEED + 1, SEED + 2] and len(group["replicas"]) == K
    for k, single in enumerate(singles):
        folder = root / "group" / f"seed{SEED + k}"
        record = json.loads((folder / "record.json").read_text())
        assert set(record) - set(single) == {"replica"}, "the same fields as a separate run's, plus the flag"
        assert record["replica"] == {"index": k, "replicas": K, "group_seed": SEED, "group_dir": str(root / "group")}
        assert record["seed"] == record["config"]["seed"] == SEED + k
        assert record["config"]["trainer"]["replicas"] == 1, "the config of the separate run it equals"
        assert record["config_fingerprint"] == single["config_fingerprint"]
        assert record["status"] == "complete" and len(record["epochs"]) == EPOCHS
        assert (folder / "metrics.jsonl").read_text().count("\n") == EPOCHS
    seconds = {json.loads((root / "group" / f"seed{SEED + k}" / "record.json").read_text())["epochs"][1]["seconds"]
               for k in range(K)}
    assert len(seconds) == 1, "every replica's epoch seconds are the group's wall time"
    assert not (root / "group" / "record.json").exists() and (root / "group" / "latest").exists()


def test_load_run_reads_a_replica_as_its_own_run(runs):
    """pcjax.load_run on replica k's folder takes row k of the group's checkpoint: it evaluates as the replica's
    record says, predicts as the separate run with its seed, and still loads when the group folder moved."""
    root, group, singles = runs
    for k, single in enumerate(singles):
        folder = root / "group" / f"seed{SEED + k}"
        run = pj.load_run(folder)
        record = json.loads((folder / "record.json").read_text())
        assert run.epoch == EPOCHS and run.evaluate("test") == pytest.approx(record["epochs"][-1]["test_acc"], abs=1e-7)
        alone = pj.load_run(root / f"single{k}")
        x = run.split("test")[0][:32]
        np.testing.assert_allclose(run.predict(x), alone.predict(x), rtol=1e-4, atol=1e-5)
    moved = root.parent / (root.name + "_moved")
    import shutil

    shutil.copytree(root / "group", moved)
    rec_path = moved / f"seed{SEED + 1}" / "record.json"
    rec = json.loads(rec_path.read_text())
    rec["replica"]["group_dir"] = str(root / "gone")  # where the group was trained, no longer there
    rec_path.write_text(json.dumps(rec))
    assert pj.load_run(moved / f"seed{SEED + 1}").evaluate("test") == pytest.approx(
        singles[1]["epochs"][-1]["test_acc"], rel=1e-5)


def test_tables_read_replicas_as_seeds(runs):
    root, _, _ = runs
    rows = group_rows(load_records([root / "group"]))
    assert len(rows) == 1 and [r.seed for r in rows[0].records] == [SEED, SEED + 1, SEED + 2]
    pooled = group_rows(load_records([root / "group" / f"seed{SEED}", root / "single1", root / "single2"]))
    assert len(pooled) == 1 and len(pooled[0].records) == K, "replicas pool with separately trained seeds"


def test_validation_split_indices_match_split_validation():
    data = load_dataset("digits", limit_train=256)
    train, (val_x, _) = split_validation(data, 0.1, 7)
    tr, va = split_indices(256, 0.1, 7)
    np.testing.assert_array_equal(data.train_x[tr], train.train_x)
    np.testing.assert_array_equal(data.train_x[va], val_x)


def test_interrupted_group_resumes_exactly(runs, tmp_path, monkeypatch):
    """Killed right after epoch 1 was checkpointed, the group resumed ends as the uninterrupted one."""
    root, _, _ = runs
    original = GroupStore.save

    def save(self, state, records, epoch, stopped):
        original(self, state, records, epoch, stopped)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(GroupStore, "save", save)
    with pytest.raises(RunInterrupted):
        run_experiment(_config(K), run_dir=tmp_path / "g")
    monkeypatch.setattr(GroupStore, "save", original)
    for k in range(K):
        record = json.loads((tmp_path / "g" / f"seed{SEED + k}" / "record.json").read_text())
        assert record["status"] == "interrupted" and len(record["epochs"]) == 1
    resumed = run_experiment(_config(K, resume=str(tmp_path / "g")), run_dir=tmp_path / "g")
    full = _final(root / "group")
    for path, value in _final(tmp_path / "g").items():
        np.testing.assert_array_equal(value, full[path], err_msg=path)
    for k, record in enumerate(resumed["replicas"]):
        uninterrupted = json.loads((root / "group" / f"seed{SEED + k}" / "record.json").read_text())
        strip = lambda es: [{key: v for key, v in e.items() if "seconds" not in key} for e in es]  # noqa: E731
        assert strip(record["epochs"]) == strip(uninterrupted["epochs"])
        assert record["status"] == "complete" and record["resumes"][0]["epoch"] == 1


def test_group_resumes_within_an_epoch_exactly(tmp_path, monkeypatch):
    """Killed after the second within-epoch checkpoint of epoch 2 (3 chunks), the resumed group equals
    an uninterrupted one."""
    kw = dict(chunks_per_epoch=3, checkpoint_minutes=0.0)
    run_experiment(_config(2, **kw), run_dir=tmp_path / "full")
    original = GroupStore.save_partial

    def save_partial(self, state, records, epoch, chunk, metrics, seconds, chunks_total=None):
        original(self, state, records, epoch, chunk, metrics, seconds, chunks_total)
        assert chunks_total == 3
        if (epoch, chunk) == (1, 2):
            raise KeyboardInterrupt

    monkeypatch.setattr(GroupStore, "save_partial", save_partial)
    with pytest.raises(RunInterrupted):
        run_experiment(_config(2, **kw), run_dir=tmp_path / "g")
    monkeypatch.setattr(GroupStore, "save_partial", original)
    assert (tmp_path / "g" / "partial.pcjax").exists()
    run_experiment(_config(2, resume=str(tmp_path / "g"), **kw), run_dir=tmp_path / "g")
    full = _final(tmp_path / "full")
    for path, value in _final(tmp_path / "g").items():
        np.testing.assert_array_equal(value, full[path], err_msg=path)
    assert not (tmp_path / "g" / "partial.pcjax").exists()


def test_step_loop_replicas_equal_separate_runs(tmp_path):
    """The per-step dispatch (trainer.loop=step) runs the same vmapped step."""
    group = run_experiment(_config(2, epochs=1, loop="step"), run_dir=tmp_path / "g")
    params = _final(tmp_path / "g")
    for k in range(2):
        single = run_experiment(_config(seed=SEED + k, epochs=1, loop="step"), run_dir=tmp_path / f"s{k}")
        _same_metrics(group["replicas"][k], single)
        _same_params(params, k, _final(tmp_path / f"s{k}"))


def test_diverged_replicas_are_marked_and_named(tmp_path):
    with pytest.raises(DivergenceError, match="2 of 2 replicas diverged") as err:
        run_experiment(_config(2, epochs=1, divergence_threshold=1e-9), run_dir=tmp_path / "g")
    assert f"seed {SEED}:" in str(err.value) and f"seed {SEED + 1}:" in str(err.value)
    for k in range(2):
        record = json.loads((tmp_path / "g" / f"seed{SEED + k}" / "record.json").read_text())
        assert record["status"] == "diverged" and record["divergence"]["epoch"] == 1
        assert record["error"].startswith("DivergenceError:")


@pytest.mark.parametrize("key, value, fragment", [
    ("devices", 2, "trainer.devices=2"),
    ("distributed", "on", "trainer.distributed=on"),
    ("placement", "host", "trainer.placement=host"),
    ("diagnostics", True, "trainer.diagnostics"),
])
def test_unsupported_combinations_are_refused(tmp_path, key, value, fragment):
    c = _config(3, **{key: value})
    with pytest.raises(pj.ConfigError, match="trainer.replicas=3") as err:
        check_replicas(asdict(c))
    assert fragment in str(err.value) and "trainer.replicas=1" in str(err.value)
    with pytest.raises(pj.ConfigError):
        run_experiment(c, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resuming_a_group_with_another_replica_count_is_refused(runs, tmp_path):
    root, _, _ = runs
    with pytest.raises(pj.ConfigError, match="trainer.replicas: 3 -> 2"):
        run_experiment(_config(2, resume=str(root / "group")), run_dir=tmp_path / "x")
