"""Device-side batching and augmentation: exact, deterministic per key, label-preserving."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcjax.data import (
    AugmentSpec,
    augment,
    augment_eval,
    center_crop,
    epoch_permutation,
    eval_batches,
    load_dataset,
    normalize,
    random_crop,
    random_crop_to,
    random_flip,
)


def ramp(n: int = 6, h: int = 8, w: int = 8, c: int = 3) -> np.ndarray:
    """Distinct, non-zero pixels: image k is filled with values identifying (k, i, j, ch)."""
    x = np.arange(n * h * w * c).reshape(n, h, w, c) % 250 + 1
    return x.astype(np.uint8)


def find_offset(out: np.ndarray, img: np.ndarray, pad: int) -> tuple[int, int] | None:
    """The (dy, dx) for which out == zero-padded img[dy:dy+H, dx:dx+W], or None."""
    h, w, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            if np.array_equal(padded[dy : dy + h, dx : dx + w], out):
                return dy, dx
    return None


def test_normalize_formula_and_own_mean_is_zero():
    x = jnp.array([[[[0, 255, 51]]]], jnp.uint8)
    out = normalize(x, (0.5, 0.5, 0.2), (0.25, 0.5, 0.1))
    np.testing.assert_allclose(out[0, 0, 0], [(0 - 0.5) / 0.25, (1 - 0.5) / 0.5, (0.2 - 0.2) / 0.1], atol=1e-6)
    assert out.dtype == jnp.float32
    for ds in (load_dataset("digits"), load_dataset("synthetic", image_shape=(4, 4, 3))):
        z = np.asarray(normalize(ds.train_x, ds.mean, ds.std))
        np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, atol=1e-4)


def test_random_crop_padding_zero_is_identity():
    x = jnp.asarray(ramp())
    assert random_crop(jax.random.key(0), x, 0) is x
    assert augment(jax.random.key(0), x, AugmentSpec()) is x


def test_random_crop_is_shifted_copy_and_independent_per_sample():
    x = ramp(n=64, h=6, w=5, c=2)
    out = np.asarray(jax.jit(random_crop, static_argnums=2)(jax.random.key(1), jnp.asarray(x), 2))
    assert out.shape == x.shape and out.dtype == np.uint8
    offsets = [find_offset(out[k], x[k], 2) for k in range(len(x))]
    assert all(o is not None for o in offsets)  # each output is a shifted copy of ITS OWN image
    assert len(set(offsets)) > 10  # offsets drawn per sample
    # a known shift: output pixel (i, j) = input pixel (i + dy - 2, j + dx - 2)
    dy, dx = offsets[0]
    i, j = 3, 2
    assert out[0, i, j, 1] == x[0, i + dy - 2, j + dx - 2, 1]


def test_random_crop_offsets_uniform():
    n, pad = 3000, 1
    x = np.tile(np.arange(1, 17, dtype=np.uint8).reshape(1, 4, 4, 1), (n, 1, 1, 1))
    out = np.asarray(random_crop(jax.random.key(2), jnp.asarray(x), pad))
    padded = np.pad(x[0], ((pad, pad), (pad, pad), (0, 0)))
    counts = np.zeros((3, 3), int)
    for dy in range(3):
        for dx in range(3):
            counts[dy, dx] = np.all(out == padded[dy : dy + 4, dx : dx + 4], axis=(1, 2, 3)).sum()
    assert counts.sum() == n  # every output is exactly one of the 9 shifts
    np.testing.assert_allclose(counts.sum(1), n / 3, rtol=0.12)  # each row offset ~1/3 of the time
    np.testing.assert_allclose(counts.sum(0), n / 3, rtol=0.12)


def test_random_crop_deterministic_per_key():
    x = jnp.asarray(ramp(n=32))
    a = random_crop(jax.random.key(5), x, 3)
    b = random_crop(jax.random.key(5), x, 3)
    c = random_crop(jax.random.key(6), x, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_crop_to_and_center_crop():
    x = ramp(n=16, h=10, w=9, c=1)
    out = np.asarray(random_crop_to(jax.random.key(0), jnp.asarray(x), 7))
    assert out.shape == (16, 7, 7, 1)
    for k in range(16):
        assert any(np.array_equal(x[k, dy : dy + 7, dx : dx + 7], out[k]) for dy in range(4) for dx in range(3))
    np.testing.assert_array_equal(center_crop(jnp.asarray(x), 6), x[:, 2:8, 1:7])
    with pytest.raises(ValueError):
        center_crop(jnp.asarray(x), 11)


def test_random_flip_twice_is_identity_and_per_sample():
    x = jnp.asarray(ramp(n=200, h=4, w=5, c=2))
    key = jax.random.key(3)
    once = np.asarray(random_flip(key, x))
    np.testing.assert_array_equal(random_flip(key, jnp.asarray(once)), x)
    flipped = [np.array_equal(once[k], np.asarray(x)[k, :, ::-1]) for k in range(200)]
    kept = [np.array_equal(once[k], np.asarray(x)[k]) for k in range(200)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 60 < sum(flipped) < 140  # p = 0.5 per sample
    np.testing.assert_array_equal(random_flip(key, x), once)


def test_augment_label_preserving_dtype_and_jit():
    n = 32
    x = np.broadcast_to(np.arange(1, n + 1, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 3)).copy()
    y = jnp.arange(n)
    spec = AugmentSpec(crop_padding=2, flip=True)
    out = np.asarray(jax.jit(augment, static_argnums=2)(jax.random.key(0), jnp.asarray(x), spec))
    assert out.dtype == np.uint8 and out.shape == x.shape
    for k in range(n):  # example k only contains its own pixels (and zero padding): stays with label y[k]
        assert set(np.unique(out[k])) <= {0, k + 1} and (out[k] == k + 1).sum() >= 36
    np.testing.assert_array_equal(y, jnp.arange(n))
    sized = AugmentSpec(flip=True, crop_size=6)
    assert augment(jax.random.key(1), jnp.asarray(x), sized).shape == (n, 6, 6, 3)
    assert augment_eval(jnp.asarray(x), sized).shape == (n, 6, 6, 3)
    xa = jnp.asarray(x)
    assert augment_eval(xa, spec) is xa  # no crop_size: evaluation view is the batch itself
    f = augment(jax.random.key(2), jnp.asarray(x, jnp.float32), spec)
    assert f.dtype == jnp.float32


def test_epoch_permutation_rows_are_disjoint_subset():
    idx = jax.jit(epoch_permutation, static_argnums=(1, 2))(jax.random.key(0), 103, 10)
    assert idx.shape == (10, 10) and idx.dtype == jnp.int32
    flat = np.asarray(idx).ravel()
    assert len(set(flat.tolist())) == 100 and flat.min() >= 0 and flat.max() < 103
    np.testing.assert_array_equal(epoch_permutation(jax.random.key(0), 103, 10), idx)
    assert not np.array_equal(epoch_permutation(jax.random.key(1), 103, 10), idx)
    with pytest.raises(ValueError):
        epoch_permutation(jax.random.key(0), 5, 10)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 64))
def test_eval_batches_cover_every_index_once(n, batch_size):
    idx, mask = eval_batches(n, batch_size)
    assert idx.shape == mask.shape == (-(-n // batch_size), batch_size)
    assert idx.dtype == np.int32 and mask.dtype == bool
    assert sorted(idx[mask].tolist()) == list(range(n))
    assert idx.min() >= 0 and idx.max() < n  # padding stays a valid gather index
    assert mask.sum() == n


def test_eval_batches_masked_metric_counts_each_example_once():
    labels = jnp.arange(23) % 3
    idx, mask = eval_batches(23, 8)
    correct = jnp.sum(jnp.where(jnp.asarray(mask), labels[jnp.asarray(idx)] == 0, False))
    assert int(correct) == int(jnp.sum(labels == 0))
