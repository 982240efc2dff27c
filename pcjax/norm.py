"""Normalisation that is safe under predictive coding, and a conv block that uses it.

PC evaluates the same block many times per batch (feed-forward init, every inference step, the
weight update) on latents that move between calls. Batch statistics would couple the samples'
energies and running statistics would change with every call, so only *per-sample* normalisation
is offered: ``GroupNorm`` (statistics over H, W and a group of channels of one sample) and its
``groups=1`` case, ``LayerNorm`` over (H, W, C). Neither keeps state; both have a learned
per-channel gain and offset.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .blocks import Conv, _pool, get_activation
from .errors import ConfigError

NORMS = ("none", "group", "layer")


class GroupNorm(eqx.Module):
    """y = gamma * (x - mean_g) / sqrt(var_g + eps) + beta on NHWC arrays, statistics per sample
    and per group of ``C / groups`` channels (over H, W and the group's channels)."""

    gamma: Array
    beta: Array
    groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5):
        if groups < 1 or channels % groups:
            raise ConfigError(f"GroupNorm needs groups dividing channels; got {groups} groups for {channels} channels")
        self.gamma, self.beta = jnp.ones((channels,)), jnp.zeros((channels,))
        self.groups, self.eps = int(groups), float(eps)

    def __call__(self, x: Array) -> Array:
        B, C = x.shape[0], x.shape[-1]
        g = x.reshape(B, -1, self.groups, C // self.groups)
        mean = g.mean(axis=(1, 3), keepdims=True)
        var = g.var(axis=(1, 3), keepdims=True)
        g = (g - mean) / jnp.sqrt(var + self.eps)
        return g.reshape(x.shape) * self.gamma + self.beta


def make_norm(kind: str, channels: int) -> GroupNorm | None:
    """``none`` -> None; ``group`` -> GroupNorm with min(32, C) groups (largest divisor of C not above 32);
    ``layer`` -> GroupNorm with one group (LayerNorm over H, W, C)."""
    if kind in (None, "none"):
        return None
    if kind == "group":
        groups = max(d for d in range(1, min(32, channels) + 1) if channels % d == 0)
        return GroupNorm(channels, groups)
    if kind == "layer":
        return GroupNorm(channels, 1)
    raise ConfigError(f"model.norm={kind!r} is not valid; valid choices: {', '.join(NORMS)}")


class ConvNorm(eqx.Module):
    """Conv block with normalisation: mu = pool(act(norm(conv(x) + b))).

    ``linear`` is the convolution alone (what a tied top-down predictor transposes); ``pool`` and
    ``pool_size`` are exposed like ``Conv``'s so top-down predictors can be built for it.
    """

    conv: Conv
    norm: GroupNorm
    act: str = eqx.field(static=True)
    pool: str | None = eqx.field(static=True)
    pool_size: int = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 padding: int = 1, act: str = "identity", pool: str | None = None, pool_size: int = 2,
                 norm: str = "group", key: PRNGKeyArray):
        get_activation(act)
        self.conv = Conv(in_channels, out_channels, kernel_size, stride=stride, padding=padding, key=key)
        self.norm = make_norm(norm, out_channels)
        if self.norm is None:
            raise ConfigError("ConvNorm needs a normalisation; use Conv for norm='none'")
        self.act = act
        self.pool = None if pool in (None, "none") else pool
        self.pool_size = pool_size

    def linear(self, x: Array) -> Array:
        """conv(x, W) without bias, normalisation, activation or pooling."""
        return self.conv.linear(x)

    def __call__(self, x: Array) -> Array:
        return _pool(get_activation(self.act)(self.norm(self.conv(x))), self.pool, self.pool_size)


def conv_block(in_channels: int, out_channels: int, kernel_size: int = 3, *, norm: str = "none", **kwargs):
    """A ``Conv`` block, or a ``ConvNorm`` block when ``norm`` is ``group`` or ``layer``."""
    if norm in (None, "none"):
        return Conv(in_channels, out_channels, kernel_size, **kwargs)
    if norm not in NORMS:
        raise ConfigError(f"model.norm={norm!r} is not valid; valid choices: {', '.join(NORMS)}")
    return ConvNorm(in_channels, out_channels, kernel_size, norm=norm, **kwargs)
