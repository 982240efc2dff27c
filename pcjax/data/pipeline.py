"""Device-side batching, normalisation and augmentation in pure JAX.

All functions work on whole NHWC batches (no Python loop over samples) and can be called inside
``jax.jit``; sizes such as ``padding``, ``size``, ``n`` and ``batch_size`` are static Python ints.
Augmentations act on images only: labels are never touched, so ``(x, y)`` pairs stay aligned.

Typical use with a device-resident dataset::

    idx = epoch_permutation(key, n_train, batch_size)       # (num_batches, batch_size)
    def step(carry, batch_idx):
        x = augment(k, train_x[batch_idx], spec)              # uint8, same shape
        x = normalize(x, ds.mean, ds.std)                     # float32
        ...
    jax.lax.scan(step, carry, idx)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AugmentSpec",
    "augment",
    "augment_eval",
    "center_crop",
    "epoch_permutation",
    "eval_batches",
    "normalize",
    "random_crop",
    "random_crop_to",
    "random_flip",
]


def normalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Map uint8 pixels to standardised float32: ``(x / 255 - mean) / std``, per channel (last axis)."""
    m = jnp.asarray(mean, jnp.float32)
    s = jnp.asarray(std, jnp.float32)
    return (jnp.asarray(x).astype(jnp.float32) / 255.0 - m) / s


def _crop_at(x: jax.Array, offsets: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Crop each image ``x[i]`` at ``(offsets[i, 0], offsets[i, 1])`` to ``size`` (vmap + dynamic_slice)."""
    c = x.shape[-1]

    def one(img: jax.Array, off: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(img, (off[0], off[1], jnp.int32(0)), (size[0], size[1], c))

    return jax.vmap(one)(x, offsets)


def random_crop(key: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """Zero-pad each image by ``padding`` pixels on every side, then crop back to ``(H, W)``.

    The offset ``(dy, dx)`` is drawn uniformly from ``{0..2*padding}^2`` independently per sample,
    so output pixel ``(i, j)`` is input pixel ``(i + dy - padding, j + dx - padding)`` (0 outside).
    ``padding == 0`` returns ``x`` unchanged.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    return _crop_at(padded, offsets, (h, w))


def random_crop_to(key: jax.Array, x: jax.Array, size: int) -> jax.Array:
    """Random ``size x size`` crop of each image (offsets uniform in ``{0..H-size} x {0..W-size}``)."""
    n, h, w, _ = x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size {size} must be in [1, {min(h, w)}]")
    oy = jax.random.randint(key, (n,), 0, h - size + 1, dtype=jnp.int32)
    ox = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, w - size + 1, dtype=jnp.int32)
    return _crop_at(x, jnp.stack([oy, ox], axis=1), (size, size))


def center_crop(x: jax.Array, size: int) -> jax.Array:
    """Central ``size x size`` crop: rows ``[(H-size)//2, (H-size)//2 + size)``, same for columns."""
    _, h, w, _ = x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size {size} must be in [1, {min(h, w)}]")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size, :]


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Flip each image horizontally (``x[:, :, ::-1, :]``) with probability 0.5, independently."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


@dataclass(frozen=True)
class AugmentSpec:
    """Training-time augmentation.

    Attributes:
        crop_padding: zero-pad-and-crop padding for :func:`random_crop` (0 = off), e.g. 4 for CIFAR.
        flip: random horizontal flips (:func:`random_flip`).
        crop_size: random ``crop_size`` crop (:func:`random_crop_to`), e.g. 56 for 64x64 images;
            evaluation then uses :func:`augment_eval` (centre crop) to get the same size.
    """

    crop_padding: int = 0
    flip: bool = False
    crop_size: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.crop_padding > 0 or self.flip or self.crop_size is not None


def augment(key: jax.Array, x: jax.Array, spec: AugmentSpec) -> jax.Array:
    """Apply ``spec`` to a batch (uint8 or float): random ``crop_size`` crop, then pad-and-crop,
    then flip, each with its own sub-key. Identity when nothing is enabled. Dtype is preserved.
    """
    if not spec.enabled:
        return x
    k_size, k_pad, k_flip = jax.random.split(key, 3)
    if spec.crop_size is not None:
        x = random_crop_to(k_size, x, spec.crop_size)
    if spec.crop_padding > 0:
        x = random_crop(k_pad, x, spec.crop_padding)
    if spec.flip:
        x = random_flip(k_flip, x)
    return x


def augment_eval(x: jax.Array, spec: AugmentSpec) -> jax.Array:
    """Deterministic evaluation view matching ``spec``: centre crop to ``crop_size`` if set, else ``x``."""
    return center_crop(x, spec.crop_size) if spec.crop_size is not None else x


def epoch_permutation(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Shuffle ``range(n)`` and cut it into ``n // batch_size`` full batches (the remainder is dropped).

    Returns an int32 array ``(n // batch_size, batch_size)``; no index appears twice. Suitable
    as the ``xs`` of a ``lax.scan`` over one epoch.
    """
    num_batches = n // batch_size
    if batch_size <= 0 or num_batches == 0:
        raise ValueError(f"need 0 < batch_size <= n, got batch_size={batch_size}, n={n}")
    perm = jax.random.permutation(key, n)[: num_batches * batch_size]
    return perm.reshape(num_batches, batch_size).astype(jnp.int32)


def eval_batches(n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Index batches covering ``range(n)`` exactly once, in order, with a validity mask.

    Returns ``(idx, mask)`` of shape ``(ceil(n / batch_size), batch_size)``: ``idx`` int32 and
    ``mask`` bool. The last batch is padded with index ``n - 1`` (a valid index, so gathers
    stay in bounds) and ``mask = False``; sum metrics with ``mask`` so padding is not counted.
    """
    if batch_size <= 0 or n <= 0:
        raise ValueError(f"need n > 0 and batch_size > 0, got n={n}, batch_size={batch_size}")
    num_batches = -(-n // batch_size)
    flat = np.arange(num_batches * batch_size)
    mask = flat < n
    idx = np.where(mask, flat, n - 1).astype(np.int32)
    return idx.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)
