"""End-to-end training: accuracy on real data, run records, divergence, resume, config errors."""

import json
import os
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import pcjax as pj
from pcjax.checkpoint import CheckpointError
from pcjax.config import Config
from pcjax.data import load_dataset
from pcjax.experiment import build, run_experiment, to_dict
from pcjax.training import TrainerConfig, fit


def _digits_cfg(algorithm: str, epochs: int = 10) -> Config:
    c = Config()
    c.algorithm.name = algorithm
    c.algorithm.latent.lr, c.algorithm.latent.momentum = 0.1, 0.5
    c.model.width, c.model.depth = 128, 2
    c.trainer.epochs, c.trainer.batch_size, c.trainer.progress = epochs, 32, False
    c.optim.lr = 1e-3
    return c


@pytest.mark.parametrize("algorithm", ["pc", "bp"])
def test_digits_reaches_95_percent(algorithm, tmp_path):
    record = run_experiment(_digits_cfg(algorithm), run_dir=tmp_path)
    assert record["summary"]["test_acc"] >= 0.95, record["summary"]
    saved = json.loads((tmp_path / "record.json").read_text())
    assert saved["status"] == "complete" and len(saved["epochs"]) == 10
    for key in ("dataset", "model", "algorithm", "hardware", "config", "summary"):
        assert saved[key]
    assert saved["summary"]["seconds_per_epoch"] > 0


def test_bidirectional_lalr_on_digits(tmp_path):
    c = _digits_cfg("pc")
    c.energy.lam = 0.1
    c.lalr.rule, c.lalr.params = "error_normalised", {"eps": 1e-3, "max_scale": 10.0}
    record = run_experiment(c, run_dir=tmp_path)
    assert record["algorithm"].startswith("bpc")
    assert record["summary"]["test_acc"] >= 0.93, record["summary"]
    assert len(record["inference_trace"]) == c.algorithm.T + 1


needs_mnist = pytest.mark.skipif(
    not (Path(os.environ.get("PCJAX_DATA_DIR", "/nonexistent")) / "mnist" / "t10k-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found under PCJAX_DATA_DIR (set it to a folder holding mnist/*-ubyte.gz)",
)


@needs_mnist
def test_mnist_pcx_mlp_one_epoch(tmp_path):
    """PCX MLP 784-128-128-128-10, PC-SE, T=8, PCX latent rates; weight lr 1e-3 for a one-epoch budget."""
    c = Config()
    c.dataset.name = "mnist"
    c.model.width, c.model.depth, c.model.act = 128, 3, "gelu"
    c.algorithm.T, c.algorithm.latent.lr, c.algorithm.latent.momentum = 8, 0.0105, 0.65
    c.optim.lr, c.optim.weight_decay = 1e-3, 3.55e-4
    c.trainer.epochs, c.trainer.batch_size, c.trainer.progress = 1, 128, False
    record = run_experiment(c, run_dir=tmp_path)
    assert record["summary"]["test_acc"] >= 0.95, record["summary"]


def _fit(tmp_path, epochs, *, resume=False, tracker=None, latent_lr=0.1, **trainer):
    c = to_dict(_digits_cfg("pc", epochs))
    c["algorithm"]["latent"]["lr"] = latent_lr
    data = load_dataset("digits")
    model, algo = build(c, int(data.train_x.shape[0] * 0.9) // 32, data.image_shape, data.num_classes)
    tc = TrainerConfig(epochs=epochs, batch_size=32, progress=False, run_dir=str(tmp_path), resume=resume, seed=0,
                       **trainer)
    return fit(algo, model, data, tc, tracker=tracker, meta={"name": "t"})


class _Kill:
    """A tracker that simulates the process being killed right after epoch ``k`` was saved."""

    def __init__(self, k):
        self.k = k

    def log(self, metrics, step):
        if step == self.k:
            raise KeyboardInterrupt


def test_resume_after_interruption_is_exact(tmp_path):
    full_state, full = _fit(tmp_path / "a", 3)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", 3, tracker=_Kill(1))
    assert json.loads((tmp_path / "b" / "record.json").read_text())["status"] == "running"
    state, resumed = _fit(tmp_path / "b", 3, resume=True)
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(full_state, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(state, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    strip = lambda es: [{k: v for k, v in e.items() if "seconds" not in k} for e in es]  # noqa: E731
    assert strip(full["epochs"]) == strip(resumed["epochs"])


def _same_run(state_a, record_a, state_b, record_b):
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(state_a, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(state_b, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    strip = lambda es: [{k: v for k, v in e.items() if "seconds" not in k} for e in es]  # noqa: E731
    assert strip(record_a["epochs"]) == strip(record_b["epochs"])


@pytest.mark.parametrize("loop", ["scan", "step"])
def test_resume_within_an_epoch_is_exact(tmp_path, within_epoch_saves, loop):
    """Killed after the second within-epoch checkpoint of epoch 2 (of 5 chunks), the resumed run ends with
    the weights and per-epoch record of the uninterrupted run, and no within-epoch file is left."""
    kw = dict(loop=loop, chunks_per_epoch=5, checkpoint_minutes=0.0)
    full_state, full = _fit(tmp_path / "a", 2, **kw)
    assert not (tmp_path / "a" / "partial.pcjax").exists()  # removed once its epoch is checkpointed
    saved = within_epoch_saves(lambda epoch, chunk: (epoch, chunk) == (1, 2))
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", 2, **kw)
    assert saved == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    assert (tmp_path / "b" / "latest").read_text().strip() == "ckpt_00001.pcjax"
    assert (tmp_path / "b" / "partial.pcjax").exists()
    saved = within_epoch_saves()
    state, resumed = _fit(tmp_path / "b", 2, resume=True, **kw)
    assert saved == [(1, 3), (1, 4)]  # only the chunks after the within-epoch checkpoint ran
    _same_run(full_state, full, state, resumed)
    assert resumed["resumes"][-1]["epoch"] == 1 and resumed["resumes"][-1]["chunk"] == 2
    assert not (tmp_path / "b" / "partial.pcjax").exists()


def test_resume_within_the_first_epoch_and_without_within_epoch_checkpoints(tmp_path, within_epoch_saves):
    kw = dict(chunks_per_epoch=4, checkpoint_minutes=0.0)
    full_state, full = _fit(tmp_path / "a", 1, **kw)
    within_epoch_saves(lambda epoch, chunk: chunk == 3)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", 1, **kw)
    assert not (tmp_path / "b" / "latest").exists()  # no epoch finished: only the within-epoch file
    from pcjax.checkpoint import read_checkpoint_meta
    from pcjax.progress import run_progress

    meta = read_checkpoint_meta(tmp_path / "b" / "partial.pcjax")
    assert (meta["epoch"], meta["chunk"], meta["chunks_total"]) == (0, 3, 4)  # what `pcjax status` reads
    assert run_progress(tmp_path / "b").chunks_total == 4
    within_epoch_saves()
    state, resumed = _fit(tmp_path / "b", 1, resume=True, **kw)
    _same_run(full_state, full, state, resumed)
    assert resumed["resumes"][-1] == {**resumed["resumes"][-1], "epoch": 0, "chunk": 3}
    # null turns them off: nothing is written part-way
    saved = within_epoch_saves(lambda epoch, chunk: True)
    _fit(tmp_path / "c", 1, chunks_per_epoch=4, checkpoint_minutes=None)
    assert saved == []
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["ckpt_00001.pcjax", "latest", "record.json"]


def test_within_epoch_checkpoints_that_do_not_fit_the_run(tmp_path):
    """A stale one (its epoch already checkpointed) is dropped; one from a later epoch than the latest
    checkpoint raises, naming the file; a fresh run moves an earlier run's one aside with its checkpoints."""
    kw = dict(chunks_per_epoch=4, checkpoint_minutes=0.0)
    _fit(tmp_path, 1, **kw)
    partial = tmp_path / "partial.pcjax"
    from pcjax.checkpoint import CheckpointManager, save_checkpoint

    manager = CheckpointManager(tmp_path)
    save_checkpoint(partial, ({"w": np.zeros(2)}, {}), {"epoch": 0, "chunk": 1, "metric_shapes": {}})
    assert manager.load_partial({"w": np.zeros(2)}, 1) is None and not partial.exists()  # stale: removed
    save_checkpoint(partial, ({"w": np.zeros(2)}, {}), {"epoch": 3, "chunk": 1, "metric_shapes": {}})
    with pytest.raises(CheckpointError, match="partial.pcjax continues epoch 4"):
        manager.load_partial({"w": np.zeros(2)}, 1)
    with pytest.warns(UserWarning, match="moved them to"):
        _fit(tmp_path, 1, **kw)  # a fresh run here: the earlier run's files go to previous-*/
    (archived,) = tmp_path.glob("previous-*")
    assert (archived / "partial.pcjax").exists()


def test_divergence_names_step_and_keeps_last_good_checkpoint(tmp_path):
    _fit(tmp_path, 1)
    before = (tmp_path / "record.json").read_text()
    with pytest.raises(pj.DivergenceError) as err:
        _fit(tmp_path, 3, resume=True, latent_lr=1e30)
    msg = str(err.value)
    assert "epoch 2" in msg and "inference step" in msg and "layer" in msg and "algorithm.latent.lr" in msg
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "diverged" and len(record["epochs"]) == 1
    assert record["epochs"] == json.loads(before)["epochs"]
    state, _ = _fit(tmp_path, 1, resume=True)  # the epoch-1 checkpoint still loads
    assert state is not None


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    _fit(tmp_path, 1)
    latest = tmp_path / (tmp_path / "latest").read_text().strip()
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    latest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        _fit(tmp_path, 2, resume=True)
    assert latest.name in str(err.value)


def _cnn_fit(tmp_path, loop, *, latent_lr=0.05, epochs=1):
    c = to_dict(_digits_cfg("pc", epochs))
    c["model"] = {**to_dict(Config())["model"], "name": "mnist_cnn", "width_multiplier": 0.125}  # no MLP width/depth
    c["algorithm"]["latent"]["lr"], c["algorithm"]["T"] = latent_lr, 4
    data = load_dataset("digits", limit_train=640)
    model, algo = build(c, 576 // 32, data.image_shape, data.num_classes)
    tc = TrainerConfig(epochs=epochs, batch_size=32, chunks_per_epoch=4, progress=False, run_dir=str(tmp_path),
                       seed=0, loop=loop)  # 18 batches in 4 chunks of 5: the last chunk has 2 padded rows
    return model, fit(algo, model, data, tc, meta={"name": "t"})


def test_per_step_loop_matches_the_epoch_scan(tmp_path):
    """``loop=step`` (one dispatch per batch, the CPU default for convnets) trains on the same batches
    with the same augmentation keys as the scan: same parameters and metrics up to float rounding."""
    model, (s_scan, r_scan) = _cnn_fit(tmp_path / "scan", "scan")
    _, (s_step, r_step) = _cnn_fit(tmp_path / "step", "step")
    leaves = lambda s: jax.tree_util.tree_leaves(eqx.filter(s.model, eqx.is_array))  # noqa: E731
    moved = max(float(np.abs(a - b).max()) for a, b in zip(leaves(s_scan), jax.tree_util.tree_leaves(
        eqx.filter(model, eqx.is_array))))
    assert moved > 1e-3  # training did change the weights
    for a, b in zip(leaves(s_scan), leaves(s_step)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(r_scan["epochs"], r_step["epochs"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["test_acc"] - b["test_acc"]) < 0.01


def test_auto_loop_and_invalid_loop():
    from pcjax.training import resolve_loop

    data = load_dataset("digits", limit_train=64)
    cnn = pj.build_model("mnist_cnn", data.image_shape, 10, key=jax.random.PRNGKey(0), width_multiplier=0.125)
    mlp = pj.build_model("mlp", data.image_shape, 10, key=jax.random.PRNGKey(0), width=8, depth=1)
    expect = "step" if jax.default_backend() == "cpu" else "scan"
    assert resolve_loop("auto", cnn) == expect and resolve_loop("auto", mlp) == "scan"
    assert resolve_loop("scan", cnn) == "scan"
    with pytest.raises(pj.ConfigError, match="trainer.loop"):
        TrainerConfig(loop="python")


def test_per_step_loop_divergence_is_caught(tmp_path):
    with pytest.raises(pj.DivergenceError, match="epoch 1"):
        _cnn_fit(tmp_path, "step", latent_lr=1e30)
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "diverged"


def test_auto_speed_options_for_convnets_on_cpu():
    """algorithm.unroll / error_front = auto: unrolled inference and the error front for convnets on a
    CPU (same results, several times faster there), the scanned loop otherwise; explicit values win."""
    from pcjax.runtime import resolve_runtime

    data = load_dataset("digits", limit_train=64)
    cnn = pj.build_model("mnist_cnn", data.image_shape, 10, key=jax.random.PRNGKey(0), width_multiplier=0.125)
    mlp = pj.build_model("mlp", data.image_shape, 10, key=jax.random.PRNGKey(0), width=8, depth=1)
    on, off, gpu = resolve_runtime(cnn, backend="cpu"), resolve_runtime(mlp, backend="cpu"), resolve_runtime(cnn, backend="gpu")
    assert (on.unroll, on.error_front, on.loop) == (True, True, "step")
    assert (off.unroll, off.error_front, off.loop) == (1, False, "scan") == (gpu.unroll, gpu.error_front, gpu.loop)
    pinned = resolve_runtime(cnn, unroll=2, error_front=False, loop="scan", backend="cpu")
    assert (pinned.unroll, pinned.error_front, pinned.loop) == (2, False, "scan")
    with pytest.raises(pj.ConfigError, match="algorithm.error_front"):
        resolve_runtime(cnn, error_front="off")
    with pytest.raises(pj.ConfigError, match="algorithm.unroll"):
        resolve_runtime(cnn, unroll=0)
    c = to_dict(_digits_cfg("pc"))
    c["model"] = {**to_dict(Config())["model"], "name": "mnist_cnn", "width_multiplier": 0.125}  # no MLP width/depth
    _, algo = build(c, 2, data.image_shape, data.num_classes)
    assert algo.runtime.unroll is (True if jax.default_backend() == "cpu" else 1)


@pytest.mark.parametrize("loop", ["scan", "step"])
def test_nothing_compiles_inside_the_timed_epochs(tmp_path, loop):
    """Every compilation (training step, evaluation on test and validation, the epoch's permutation and
    keys) happens before ``time_to_first_step_seconds``; none in the epochs, whose seconds would count it."""
    import time

    import jax.monitoring

    events, first_log = [], []

    class Clock:
        def start(self, config, run_dir):
            pass

        def log(self, metrics, step):
            first_log.append(time.perf_counter())

        def finish(self, summary=None):
            pass

    def on_compile(event, duration, fun_name="", **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append((time.perf_counter(), fun_name))

    data = load_dataset("digits")
    c = to_dict(_digits_cfg("pc", epochs=2))
    model, algo = build(c, 10, data.image_shape, data.num_classes)
    cfg = TrainerConfig(epochs=2, batch_size=64, seed=0, progress=False, checkpoint=False, loop=loop)
    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        _, record = fit(algo, model, data, cfg, tracker=Clock())
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    names = [name for _, name in events]
    assert "jit(_epoch_plan)" in names, names  # compiled last, before the first step
    ready = max(t for t, name in events if name == "jit(_epoch_plan)")
    late = [name for t, name in events if ready < t < first_log[0]]
    assert not late, f"compiled inside the first epoch: {late}"
    s = record["summary"]
    assert 0 < s["compile_seconds"] <= s["time_to_first_step_seconds"]
