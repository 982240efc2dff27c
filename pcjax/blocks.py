"""Blocks: the weighted maps between latent nodes.

A block ``f_l`` maps the batched value of node ``l-1`` to the prediction ``mu_l`` of node ``l``:
``mu_l = act(scale * (W x) + b)`` (then optional pooling). Every block also exposes
``linear(x) = scale * (W x)`` (no bias, no activation), which the tied-weight top-down predictor
transposes. Blocks are immutable equinox modules whose arrays are the trainable parameters.

A new block is any ``eqx.Module`` with ``__call__(self, x) -> y`` on batched arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .errors import ConfigError, ShapeError

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "hard_tanh": jax.nn.hard_tanh,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
}


def get_activation(name: str) -> Callable[[Array], Array]:
    """Activation function by name (``relu``, ``gelu``, ``leaky_relu``, ``tanh``, ``hard_tanh``, ...)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; valid choices: {', '.join(sorted(ACTIVATIONS))}") from None


def _uniform(key: PRNGKeyArray, shape: tuple[int, ...], fan_in: int) -> Array:
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class Dense(eqx.Module):
    """Fully connected block: mu = act(scale * flatten(x) @ W + b), reshaped to ``out_shape``.

    ``init="default"`` draws W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default);
    ``init="normal"`` draws W ~ N(0, 1) (muP-style, pair it with ``scale``).
    """

    weight: Array
    bias: Array | None
    in_shape: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)
    act: str = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        in_shape: int | tuple[int, ...],
        out_shape: int | tuple[int, ...],
        act: str = "identity",
        *,
        key: PRNGKeyArray,
        use_bias: bool = True,
        init: str = "default",
        scale: float = 1.0,
    ):
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)
        get_activation(act)
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        wkey, bkey = jax.random.split(key)
        if init == "default":
            self.weight = _uniform(wkey, (n_in, n_out), n_in)
            self.bias = _uniform(bkey, (n_out,), n_in) if use_bias else None
        elif init == "normal":
            self.weight = jax.random.normal(wkey, (n_in, n_out))
            self.bias = jnp.zeros((n_out,)) if use_bias else None
        else:
            raise ValueError(f"unknown init {init!r}; valid choices: default, normal")
        self.act = act
        self.scale = float(scale)

    def _check(self, x: Array) -> None:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"Dense block expects input of shape (B, {', '.join(map(str, self.in_shape))}) "
                f"but got {tuple(x.shape)}"
            )

    def linear(self, x: Array) -> Array:
        """scale * flatten(x) @ W (no bias, no activation)."""
        self._check(x)
        y = self.scale * (x.reshape(x.shape[0], -1) @ self.weight)
        return y.reshape((x.shape[0],) + self.out_shape)

    def __call__(self, x: Array) -> Array:
        y = self.linear(x)
        if self.bias is not None:
            y = y + self.bias.reshape(self.out_shape)
        return get_activation(self.act)(y)


def _pool(x: Array, kind: str | None, size: int) -> Array:
    if kind is None or size == 1:
        return x
    window, strides = (1, size, size, 1), (1, size, size, 1)
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, "VALID")
    if kind == "avg":
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "VALID") / (size * size)
    raise ValueError(f"unknown pooling {kind!r}; valid choices: max, avg, none")


class Conv(eqx.Module):
    """Convolution block on NHWC inputs: mu = pool(act(conv(x, W; stride, padding) + b)).

    W has HWIO layout ``(k, k, in_channels, out_channels)``; ``pool`` is ``"max"``, ``"avg"`` or None
    with window = stride = ``pool_size``. Pooling lives inside the block so that no latent sits on a
    weight-free node.
    """

    weight: Array
    bias: Array | None
    stride: int = eqx.field(static=True)
    padding: int = eqx.field(static=True)
    act: str = eqx.field(static=True)
    pool: str | None = eqx.field(static=True)
    pool_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int = 1,
        act: str = "identity",
        pool: str | None = None,
        pool_size: int = 2,
        use_bias: bool = True,
        key: PRNGKeyArray,
    ):
        get_activation(act)
        wkey, bkey = jax.random.split(key)
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = _uniform(wkey, (kernel_size, kernel_size, in_channels, out_channels), fan_in)
        self.bias = _uniform(bkey, (out_channels,), fan_in) if use_bias else None
        self.stride, self.padding, self.act = stride, padding, act
        self.pool = None if pool in (None, "none") else pool
        self.pool_size = pool_size

    def linear(self, x: Array) -> Array:
        """conv(x, W) without bias, activation or pooling."""
        if x.ndim != 4 or x.shape[-1] != self.weight.shape[2]:
            raise ShapeError(
                f"Conv block expects NHWC input with {self.weight.shape[2]} channels but got shape {tuple(x.shape)}"
            )
        return jax.lax.conv_general_dilated(
            x,
            self.weight.astype(x.dtype),
            window_strides=(self.stride, self.stride),
            padding=[(self.padding, self.padding)] * 2,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def __call__(self, x: Array) -> Array:
        y = self.linear(x)
        if self.bias is not None:
            y = y + self.bias.astype(y.dtype)
        return _pool(get_activation(self.act)(y), self.pool, self.pool_size)


class Upsample(eqx.Module):
    """Nearest-neighbour upsampling by an integer factor on NHWC arrays (weight-free)."""

    factor: int = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        if self.factor == 1:
            return x
        return jnp.repeat(jnp.repeat(x, self.factor, axis=1), self.factor, axis=2)


class Sequential(eqx.Module):
    """Composition of sub-layers acting as one block: f(x) = f_k(...f_1(x))."""

    layers: tuple[eqx.Module, ...]

    def __call__(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer(x)
        return x


class Activation(eqx.Module):
    """Weight-free activation f(x) = act(x) (e.g. before a Dense block: pre-activation residual nets)."""

    act: str = eqx.field(static=True)

    def __check_init__(self):
        get_activation(self.act)  # an unknown name fails when the model is built

    def __call__(self, x: Array) -> Array:
        return get_activation(self.act)(x)


class Identity(eqx.Module):
    """Identity skip projection S(z) = z."""

    def __call__(self, x: Array) -> Array:
        return x


class Scale(eqx.Module):
    """Weight-free scaling S(z) = c * z (e.g. a residual branch multiplier)."""

    c: float = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        return self.c * x
