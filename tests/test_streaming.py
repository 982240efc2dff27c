"""Datasets larger than device memory: batches streamed from the host (``trainer.placement=host``, or
``auto`` over a memory budget) train exactly as the device-resident path, resume exactly, and read an
on-disk (memory-mapped) dataset."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import numpy as np
import pytest

from pcjax.data import load_dataset
from pcjax.data.synthetic import load_synthetic
from pcjax.errors import ConfigError
from pcjax.experiment import build, to_dict
from pcjax.streaming import choose_placement
from pcjax.training import TrainerConfig, fit

pytest.importorskip("grain")


def _run(data, tmp_path=None, epochs=2, resume=False, **kw):
    from pcjax import load_config

    c = to_dict(load_config(None, overrides=["algorithm=pc", "energy=gaussian", "lalr=constant", "algorithm.T=4",
                                             "model.width=32", "model.depth=2"]))
    model, algo = build(c, 10, data.image_shape, data.num_classes)
    cfg = TrainerConfig(epochs=epochs, batch_size=32, eval_batch_size=100, seed=0, progress=False,
                        run_dir=None if tmp_path is None else str(tmp_path), checkpoint=tmp_path is not None,
                        resume=resume, **kw)
    return fit(algo, model, data, cfg)


def _leaves(state):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_array))]


def test_host_batches_train_exactly_like_the_device_path():
    data = load_dataset("digits")
    s_dev, r_dev = _run(data, placement="device", loop="step")
    s_host, r_host = _run(data, placement="host")
    assert r_dev["hardware"]["placement"] == "device" and r_host["hardware"]["placement"] == "host"
    for a, b in zip(_leaves(s_dev), _leaves(s_host)):
        np.testing.assert_array_equal(a, b)  # same batches, keys and compiled step: bit for bit
    for a, b in zip(r_dev["epochs"], r_host["epochs"]):
        assert a["train_loss"] == b["train_loss"]
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-6)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)


def test_auto_streams_when_the_dataset_exceeds_the_budget():
    data = load_dataset("digits")
    nbytes = data.train_x.nbytes + data.test_x.nbytes
    assert choose_placement("auto", nbytes, budget=nbytes // 2) == "host"
    assert choose_placement("auto", nbytes, budget=10 * nbytes) == "device"
    assert choose_placement("auto", nbytes, budget=None) == "device"  # CPU: no device memory limit reported
    _, record = _run(data, epochs=1, device_memory_budget=1000)
    assert record["hardware"]["placement"] == "host"
    with pytest.raises(ConfigError, match="trainer.placement"):
        choose_placement("disk", 1, None)


def test_memory_mapped_dataset_on_disk(tmp_path):
    data = load_synthetic(image_shape=(8, 8, 1), n_train=640, n_test=200)
    for split in ("train_x", "train_y", "test_x", "test_y"):
        np.save(tmp_path / f"{split}.npy", getattr(data, split))
    mapped = dataclasses.replace(data, **{s: np.load(tmp_path / f"{s}.npy", mmap_mode="r")
                                          for s in ("train_x", "train_y", "test_x", "test_y")})
    assert isinstance(mapped.test_x, np.memmap)
    s_map, r_map = _run(mapped, placement="host")
    s_mem, r_mem = _run(data, placement="host")
    for a, b in zip(_leaves(s_map), _leaves(s_mem)):
        np.testing.assert_array_equal(a, b)
    assert r_map["epochs"][-1]["test_acc"] > 0.5  # learnable synthetic classes, well above chance (0.1)


def test_host_run_resumes_exactly(tmp_path):
    data = load_dataset("digits")
    s_full, r_full = _run(data, tmp_path / "full", epochs=2, placement="host")
    _run(data, tmp_path / "part", epochs=1, placement="host")
    s_res, r_res = _run(data, tmp_path / "part", epochs=2, resume=True, placement="host")
    for a, b in zip(_leaves(s_full), _leaves(s_res)):
        np.testing.assert_array_equal(a, b)
    assert [e["train_loss"] for e in r_full["epochs"]] == [e["train_loss"] for e in r_res["epochs"]]


def test_host_run_resumes_exactly_within_an_epoch(tmp_path, within_epoch_saves):
    """Killed after chunk 2 of 4 of the only epoch, a streamed run resumes at chunk 3 (the host pipeline
    starts at that chunk's batches) and ends with the uninterrupted run's weights."""
    data = load_dataset("digits")
    kw = dict(placement="host", chunks_per_epoch=4, checkpoint_minutes=0.0)
    s_full, r_full = _run(data, tmp_path / "full", epochs=1, **kw)
    within_epoch_saves(lambda epoch, chunk: chunk == 2)
    with pytest.raises(KeyboardInterrupt):
        _run(data, tmp_path / "part", epochs=1, **kw)
    within_epoch_saves()
    s_res, r_res = _run(data, tmp_path / "part", epochs=1, resume=True, **kw)
    assert r_res["resumes"][-1]["chunk"] == 2
    for a, b in zip(_leaves(s_full), _leaves(s_res)):
        np.testing.assert_array_equal(a, b)
    assert [e["train_loss"] for e in r_full["epochs"]] == [e["train_loss"] for e in r_res["epochs"]]
