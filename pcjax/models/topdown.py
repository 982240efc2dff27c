"""Top-down predictors for convolutional networks (bidirectional energy), and their shape check.

For node l (l = ``backward_from`` .. L-1) the predictor g_{l+1} maps node l+1 back to node l:
nu_l = g_{l+1}(z_{l+1}).

``learned`` (separate weights V):
  * image -> image (H', W', C') -> (H, W, C): ``UpConv``: nearest upsampling by k = round(H / H')
    (the pooling/stride factor of the forward block), then a 3x3 convolution C' -> C whose (possibly
    asymmetric) zero padding restores (H, W) exactly, + bias + act. A pooled block gives k = 2 and
    padding 1; a padding-0 conv (H = H' + 2) gives k = 1 and padding 2; floor-pooling of an odd side
    (7 -> 3) gives k = 2 and padding (1, 2).
  * vector -> anything (the final Dense block that flattens): ``Dense(classes -> H*W*C)`` reshaped.
``tied`` (V = W^T): ``pcjax.network.Tied``: nu_l = act(L_{l+1}^T z_{l+1}) with L_{l+1} the linear part
  of the forward block; only defined when that linear part maps node l onto node l+1's shape, i.e.
  for blocks without pooling. A pooled block raises ``ConfigError`` (use ``learned``).

The activation of g_{l+1} is the network's ``act`` for hidden nodes that are activation outputs, and
the identity for the input node and for nodes that receive skip edges (their values are sums).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..blocks import Conv, Dense, get_activation
from ..errors import ConfigError, ShapeError
from ..network import Network, Tied

BACKWARD = ("none", "learned", "tied")


class UpConv(eqx.Module):
    """nu = act(conv_kxk(pad(upsample(z))) + b): nearest upsampling by ``factor`` (per side), zero
    padding ``pad`` = ((top, bottom), (left, right)), then a padding-free convolution."""

    conv: Conv
    factor: tuple[int, int] = eqx.field(static=True)
    pad: tuple[tuple[int, int], tuple[int, int]] = eqx.field(static=True)

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], act: str = "identity", *,
                 kernel_size: int = 3, key: PRNGKeyArray):
        (h1, w1, c1), (h0, w0, c0) = tuple(in_shape), tuple(out_shape)
        factor, pad = [], []
        for src, dst in ((h1, h0), (w1, w0)):
            k = max(1, round(dst / src))
            if dst - k * src + kernel_size - 1 < 0:
                k = max(1, dst // src)
            total = dst - k * src + kernel_size - 1
            if total < 0:
                raise ShapeError(f"cannot predict a side of {dst} from a side of {src} with upsampling + conv{kernel_size}")
            factor.append(k)
            pad.append((total // 2, total - total // 2))
        self.factor, self.pad = tuple(factor), tuple(pad)
        self.conv = Conv(c1, c0, kernel_size, padding=0, act=act, key=key)

    def __call__(self, x: Array) -> Array:
        x = jnp.repeat(jnp.repeat(x, self.factor[0], axis=1), self.factor[1], axis=2)
        x = jnp.pad(x, ((0, 0),) + self.pad + ((0, 0),))
        return self.conv(x)


def _learned(shape_hi: tuple[int, ...], shape_lo: tuple[int, ...], act: str, key: PRNGKeyArray) -> eqx.Module:
    if len(shape_hi) == 3 and len(shape_lo) == 3:
        return UpConv(shape_hi, shape_lo, act, key=key)
    return Dense(shape_hi, shape_lo, act, key=key)


def _tied(block: eqx.Module, l: int, shape_lo: tuple[int, ...], shape_hi: tuple[int, ...], act: str) -> Tied:
    if not hasattr(block, "linear"):
        raise ConfigError(
            f"model.backward=tied: block {l + 1} ({type(block).__name__}) has no linear part to transpose; "
            "use model.backward=learned"
        )
    if getattr(block, "pool", None) is not None:
        raise ConfigError(
            f"model.backward=tied: block {l + 1} pools ({block.pool}, size {block.pool_size}), so W^T cannot "
            f"predict node {l} from node {l + 1}; use model.backward=learned (or set model.backward_from past it)"
        )
    out = jax.eval_shape(block.linear, jax.ShapeDtypeStruct((2,) + shape_lo, jnp.float32))
    if tuple(out.shape[1:]) != shape_hi:
        raise ConfigError(
            f"model.backward=tied: the linear part of block {l + 1} maps {shape_lo} to {tuple(out.shape[1:])}, "
            f"not to node {l + 1}'s shape {shape_hi}; use model.backward=learned"
        )
    return Tied(act)


def top_down_edges(net: Network, act: str, backward: str, backward_from: int, key: PRNGKeyArray) -> list:
    """``(l, g_{l+1})`` for l = backward_from .. L-1 for a network built without top-down predictors."""
    if backward not in BACKWARD:
        raise ConfigError(f"model.backward={backward!r} is not valid; valid choices: {', '.join(BACKWARD)}")
    if backward == "none":
        return []
    get_activation(act)
    L = net.num_nodes
    if not 0 <= backward_from <= L - 1:
        raise ConfigError(f"model.backward_from={backward_from} is out of range [0, {L - 1}] for this network")
    shapes = (net.input_shape,) + net.node_shapes
    skip_targets = {t for _, t in net.skip_edges}
    keys = jax.random.split(key, L)
    edges = []
    for l in range(backward_from, L):
        node_act = "identity" if (l == 0 or l in skip_targets) else act
        if backward == "tied":
            g = _tied(net.blocks[l], l, shapes[l], shapes[l + 1], node_act)
        else:
            g = _learned(shapes[l + 1], shapes[l], node_act, keys[l])
        edges.append((l, g))
    return edges


def check_top_down(net: Network) -> None:
    """Raise ``ShapeError`` unless every top-down predictor maps node l+1's shape onto node l's shape."""
    shapes = (net.input_shape,) + net.node_shapes
    for l, g in zip(net.backward_nodes, net.backward):
        fn = net.blocks[l].linear if isinstance(g, Tied) else g
        src, want = (shapes[l], shapes[l + 1]) if isinstance(g, Tied) else (shapes[l + 1], shapes[l])
        try:
            out = tuple(jax.eval_shape(fn, jax.ShapeDtypeStruct((2,) + src, jnp.float32)).shape[1:])
        except Exception as err:  # noqa: BLE001 - re-raised with the node named
            raise ShapeError(
                f"top-down predictor for node {l} ({type(g).__name__}) cannot take node {l + 1} of shape "
                f"{shapes[l + 1]}: {err}"
            ) from err
        if out != want and isinstance(g, Tied):
            raise ShapeError(
                f"tied top-down predictor for node {l} needs the linear part of block {l + 1} to map node {l} "
                f"of shape {shapes[l]} onto node {l + 1}'s shape {shapes[l + 1]}, but it gives {out}"
            )
        if out != want:
            raise ShapeError(
                f"top-down predictor for node {l} ({type(g).__name__}) maps node {l + 1} of shape {shapes[l + 1]} "
                f"to {out}, but node {l} has shape {shapes[l]}"
            )


def build_network(blocks: Sequence[eqx.Module], input_shape: Sequence[int], *, skips=(), act: str,
                  backward: str = "none", backward_from: int = 1, key: PRNGKeyArray) -> Network:
    """``Network(blocks, input_shape, skips=skips)`` plus top-down predictors, shape-checked."""
    net = Network(blocks, input_shape, skips=skips)
    edges = top_down_edges(net, act, backward, backward_from, key)
    if not edges:
        return net
    net = Network(blocks, input_shape, skips=skips, backward=edges)
    check_top_down(net)
    return net


def num_params(module: eqx.Module) -> int:
    """Number of trainable scalars (floating-point array leaves) of a model; also works on the
    ``jax.eval_shape`` of a builder, which counts without allocating the weights."""
    leaves = jax.tree_util.tree_leaves(module)
    return sum(math.prod(a.shape) for a in leaves
               if hasattr(a, "shape") and hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact))


__all__ = ["UpConv", "top_down_edges", "check_top_down", "build_network", "num_params"]
