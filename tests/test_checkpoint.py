"""Checkpoints: round trip, corruption and incompatibility errors, manager rotation and pointer."""

from __future__ import annotations

import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pcjax.checkpoint import (
    CheckpointError,
    CheckpointManager,
    describe_mismatch,
    load_checkpoint,
    save_checkpoint,
    tree_fingerprint,
)


def make_state(seed: int, width: int = 8) -> dict:
    """A training-state-like pytree: equinox MLP, adamw state, PRNG keys, Python scalars."""
    model = eqx.nn.MLP(4, 3, width, 2, key=jax.random.key(seed))
    opt_state = optax.adamw(1e-3).init(eqx.filter(model, eqx.is_array))
    return {"model": model, "opt": opt_state, "key": jax.random.key(seed + 100),
            "legacy_key": jax.random.PRNGKey(seed + 200), "step": seed, "lr": 0.1 * seed,
            "flag": bool(seed % 2), "half": jnp.full((2,), seed, jnp.bfloat16)}


def advance(state: dict) -> dict:
    """One adamw step so the optimiser state holds non-trivial values."""
    params = eqx.filter(state["model"], eqx.is_array)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, opt = optax.adamw(1e-3).update(grads, state["opt"], params)
    return {**state, "model": eqx.apply_updates(state["model"], updates), "opt": opt}


def assert_same(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if isinstance(x, (jax.Array, np.ndarray)):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert type(x) is type(y) and (x == y or x is y)


def test_round_trip(tmp_path: Path) -> None:
    state = advance(make_state(3))
    save_checkpoint(tmp_path / "c.pcjax", state, {"epoch": 5, "val_acc": np.float32(0.5)})
    restored, meta = load_checkpoint(tmp_path / "c.pcjax", make_state(0))
    assert meta == {"epoch": 5, "val_acc": 0.5}
    assert_same(restored, state)
    assert restored["step"] == 3 and restored["flag"] is True
    x = jnp.ones(4)
    np.testing.assert_array_equal(restored["model"](x), state["model"](x))
    # restored keys are usable keys
    assert jax.random.normal(restored["key"]).shape == ()
    assert not list(tmp_path.glob("*.tmp"))  # temp file replaced atomically


def test_truncated_and_flipped_files_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.pcjax"
    save_checkpoint(path, make_state(1), {})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pcjax.*(corrupt|truncated)"):
        load_checkpoint(path, make_state(0))
    for where in (len(blob) // 3, len(blob) - 40):  # header/payload region
        flipped = bytearray(blob)
        flipped[where] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=r"c\.pcjax.*SHA-256"):
            load_checkpoint(path, make_state(0))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pcjax", make_state(0))


def test_shape_mismatch_names_leaf_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "c.pcjax"
    save_checkpoint(path, make_state(1, width=8), {})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, make_state(1, width=16))
    msg = str(info.value)
    assert "['model'].layers[0].weight" in msg and "(8, 4)" in msg and "(16, 4)" in msg
    assert "trainer.resume=false" in msg and "c.pcjax" in msg
    saved = tree_fingerprint(make_state(1))
    assert describe_mismatch(saved, make_state(2)) is None
    assert "leaves" in describe_mismatch(saved, {**make_state(2), "extra": jnp.zeros(1)})
    assert "float32" in describe_mismatch(saved, {**make_state(2), "half": jnp.zeros(2)})


def test_other_format_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.pcjax"
    save_checkpoint(path, {"a": jnp.zeros(2)}, {})
    blob = bytearray(path.read_bytes())
    blob[8:12] = (99).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path, {"a": jnp.zeros(2)})


def test_manager_keeps_newest_and_points_to_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "run", keep=2)
    assert manager.restore_latest(make_state(0)) is None
    for epoch in range(1, 5):
        manager.save(make_state(epoch), {"val_acc": 0.1 * epoch}, epoch)
    names = sorted(p.name for p in (tmp_path / "run").glob("ckpt_*.pcjax"))
    assert names == ["ckpt_00003.pcjax", "ckpt_00004.pcjax"]
    assert (tmp_path / "run" / "latest").read_text().strip() == "ckpt_00004.pcjax"
    restored, meta = CheckpointManager(tmp_path / "run").restore_latest(make_state(0))
    assert meta["epoch"] == 4 and meta["val_acc"] == pytest.approx(0.4)
    assert_same(restored, make_state(4))


def test_corrupt_latest_is_not_skipped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    manager = CheckpointManager(run, keep=3)
    manager.restore_latest(make_state(0))
    for epoch in (1, 2):
        manager.save(make_state(epoch), {}, epoch)
    latest = run / "ckpt_00002.pcjax"
    blob = latest.read_bytes()
    latest.write_bytes(blob[:-10])
    fresh = CheckpointManager(run, keep=3)
    with pytest.raises(CheckpointError) as info:
        fresh.restore_latest(make_state(0))
    msg = str(info.value)
    assert "ckpt_00002.pcjax" in msg and "ckpt_00001.pcjax" in msg and "latest" in msg
    assert latest.read_bytes() == blob[:-10]  # left untouched
    # the documented way out: move the corrupt file aside and point `latest` at the older one
    os.replace(latest, run / "ckpt_00002.pcjax.corrupt")
    (run / "latest").write_text("ckpt_00001.pcjax\n")
    tree, meta = CheckpointManager(run).restore_latest(make_state(0))
    assert meta["epoch"] == 1
    assert_same(tree, make_state(1))


def test_fresh_run_does_not_overwrite_earlier_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    old = CheckpointManager(run)
    old.save(make_state(1), {}, 1)
    blob = (run / "ckpt_00001.pcjax").read_bytes()
    fresh = CheckpointManager(run)  # e.g. trainer.resume=false in the same run_dir
    with pytest.warns(UserWarning, match="earlier run"):
        fresh.save(make_state(2), {}, 1)
    (archive,) = run.glob("previous-*")
    assert (archive / "ckpt_00001.pcjax").read_bytes() == blob
    assert (archive / "latest").read_text().strip() == "ckpt_00001.pcjax"
    _, meta = CheckpointManager(run).restore_latest(make_state(0))
    assert meta["epoch"] == 1 and (run / "ckpt_00001.pcjax").read_bytes() != blob
