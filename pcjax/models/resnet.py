"""ResNet-18 with its residual additions as skip edges in the energy.

One latent node per conv block (no latent on an addition):

  node 1        stem: ``cifar``: conv3x3 stride 1 (for 32x32); ``imagenet``: conv7x7 stride 2 pad 3
                + 2x2 max-pool (for 64x64), 64 channels
  nodes 2..17   4 stages x 2 basic blocks x 2 convs (64, 128, 256, 512 channels; the first conv of
                stages 2-4 has stride 2), each conv3x3 + bias + act
  node 18       global average pooling + linear (``AvgPoolDense``)

Basic block with input node n-1 and conv nodes n, n+1:
    mu_n     = act(conv_a(z_{n-1}) + b_a)
    mu_{n+1} = act(conv_b(z_n) + b_b) + S(z_{n-1})
S is the identity when the shapes match and a learned 1x1 strided convolution (no bias, no
activation) when the channels/resolution change. Note: the framework adds skips *after* the block's
activation (mu_l = f_l(z_{l-1}) + S(z_s)), whereas torchvision computes act(conv_b + shortcut); the
latents therefore sit on the sum, which is also the input of the next block. No BatchNorm (use
``norm="group"|"layer"`` for per-sample normalisation inside the conv blocks).

Auxiliary neurons (``aux_neurons=True``, Qi et al. 2026): the skip edge lets the output's error reach
z_{n-1} one inference step before the main path does. With auxiliary neurons each conv node of a
block also holds an auxiliary value a on the skip path, at the same depth, stored as the second half
of its channels (z_n = [m_n | a_n], z_{n+1} = [m_{n+1} | a_{n+1}]); the block's output is their sum:
    x        = merge(z_{n-1})                 (z_{n-1} itself for the stem, m + a for a block's node)
    mu_n     = [act(conv_a(x) + b_a) | S(x)]
    mu_{n+1} = [act(conv_b(m_n) + b_b) | a_n]
and the next block (or the head) reads merge(z_{n+1}) = m_{n+1} + a_{n+1}. There are no skip edges
left: the skip signal takes two nodes, as the main path does. At the feed-forward values
merge(z_{n+1}) equals the plain network's z_{n+1} exactly (same weights: the same key builds both).
Each auxiliary half shares its node's energy weight (and its LALR schedule: node index = depth).
Qi et al.'s code weights the auxiliary energies 1 / lr_x (the first one of a projection block: 1);
per-half weights are not expressible in ``Network``'s per-node energy.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..blocks import Conv, Dense, Identity
from ..errors import ConfigError, ShapeError
from ..network import Network
from ..norm import conv_block
from .aux_chain import refuse_top_down
from .topdown import build_network
from .vgg import channels

STEMS = ("cifar", "imagenet")


class GlobalAvgPool(eqx.Module):
    """Weight-free global average pooling over H, W of NHWC arrays: (B, H, W, C) -> (B, C)."""

    def __call__(self, x: Array) -> Array:
        return x.mean(axis=(1, 2))


class AvgPoolDense(eqx.Module):
    """Classifier head as one block: mu = W mean_{h,w}(x) + b. ``linear`` (pool then W) is linear in x,
    so the tied top-down predictor (its transpose) is available for this block too."""

    dense: Dense

    def __init__(self, channels_in: int, num_classes: int, *, key: PRNGKeyArray):
        self.dense = Dense(channels_in, num_classes, "identity", key=key)

    def linear(self, x: Array) -> Array:
        """W mean_{h,w}(x) (no bias)."""
        return self.dense.linear(GlobalAvgPool()(x))

    def __call__(self, x: Array) -> Array:
        return self.dense(GlobalAvgPool()(x))


def halves(z: Array) -> tuple[Array, Array]:
    """(m, a): the main and auxiliary halves of a node z = [m | a] (split on the channel axis)."""
    c = z.shape[-1] // 2
    return z[..., :c], z[..., c:]


def merge(z: Array) -> Array:
    """The value a node with auxiliary neurons passes on: merge([m | a]) = m + a."""
    m, a = halves(z)
    return m + a


class AuxOpen(eqx.Module):
    """First conv node of a block with auxiliary neurons: mu = [f(x) | S(x)] with x = merge(z) when
    the input node holds auxiliary neurons (``merge_input``), else x = z."""

    main: eqx.Module
    shortcut: eqx.Module
    merge_input: bool = eqx.field(static=True)

    def __call__(self, z: Array) -> Array:
        x = merge(z) if self.merge_input else z
        return jnp.concatenate([self.main(x), self.shortcut(x)], axis=-1)


class AuxCarry(eqx.Module):
    """Second conv node of a block with auxiliary neurons: mu = [f(m) | a] for z = [m | a] (the
    auxiliary neuron is predicted by the identity)."""

    main: eqx.Module

    def __call__(self, z: Array) -> Array:
        m, a = halves(z)
        return jnp.concatenate([self.main(m), a], axis=-1)


class Merged(eqx.Module):
    """A block reading a node with auxiliary neurons: mu = f(merge(z)) = f(m + a)."""

    block: eqx.Module

    def __call__(self, z: Array) -> Array:
        return self.block(merge(z))


def with_aux_neurons(blocks: Sequence[eqx.Module], skips: Sequence[tuple[int, int, eqx.Module]]) -> list[eqx.Module]:
    """The blocks of the same ResNet with every skip (s, s + 2, S) carried by auxiliary neurons:
    block s (node s -> s + 1) becomes ``AuxOpen(f, S)``, block s + 1 becomes ``AuxCarry(f)``, and any
    other block whose input node holds auxiliary neurons reads its merge (``Merged``)."""
    out, paired = list(blocks), set()
    for s, t, proj in skips:
        if t != s + 2:
            raise ConfigError(f"auxiliary neurons need skips over two conv nodes; got the skip {s}->{t}")
        out[s] = AuxOpen(blocks[s], proj, merge_input=s in paired)
        out[s + 1] = AuxCarry(blocks[s + 1])
        paired |= {s + 1, t}
    return [Merged(b) if i in paired and not isinstance(b, (AuxOpen, AuxCarry)) else b for i, b in enumerate(out)]


def resnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    stages: Sequence[int] = (2, 2, 2, 2),
    act: str = "gelu",
    width_multiplier: float = 1.0,
    stem: str = "cifar",
    norm: str = "none",
    backward: str = "none",
    backward_from: int = 1,
    aux_neurons: bool = False,
    key: PRNGKeyArray,
) -> Network:
    """A basic-block ResNet with ``stages[i]`` blocks in stage i (see module doc); ``aux_neurons``:
    the skips carried by auxiliary neurons (``with_aux_neurons``)."""
    if len(input_shape) != 3:
        raise ShapeError(f"ResNet models need image inputs of shape (H, W, C); got {tuple(input_shape)}")
    if stem not in STEMS:
        raise ConfigError(f"model.stem={stem!r} is not valid; valid choices: {', '.join(STEMS)}")
    if width_multiplier <= 0:
        raise ConfigError(f"model.width_multiplier must be > 0, got {width_multiplier}")
    bkey, skey, gkey = jax.random.split(key, 3)
    n_conv = 2 * sum(stages)
    keys = iter(jax.random.split(bkey, n_conv + 2))
    skeys = iter(jax.random.split(skey, len(stages)))
    c_in, c = int(input_shape[-1]), channels(64, width_multiplier)
    if stem == "cifar":
        blocks = [conv_block(c_in, c, 3, stride=1, padding=1, act=act, norm=norm, key=next(keys))]
    else:
        blocks = [conv_block(c_in, c, 7, stride=2, padding=3, act=act, pool="max", norm=norm, key=next(keys))]
    skips = []
    for i, n_blocks in enumerate(stages):
        out = channels(64 * 2**i, width_multiplier)
        for j in range(n_blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            src = len(blocks)  # node feeding this basic block
            blocks.append(conv_block(c, out, 3, stride=stride, padding=1, act=act, norm=norm, key=next(keys)))
            blocks.append(conv_block(out, out, 3, stride=1, padding=1, act=act, norm=norm, key=next(keys)))
            if stride == 1 and c == out:
                proj = Identity()
            else:
                proj = Conv(c, out, 1, stride=stride, padding=0, act="identity", use_bias=False, key=next(skeys))
            skips.append((src, len(blocks), proj))
            c = out
    blocks.append(AvgPoolDense(c, num_classes, key=next(keys)))
    if aux_neurons:
        return _aux_network(blocks, skips, input_shape, backward)
    return build_network(blocks, input_shape, skips=skips, act=act, backward=backward, backward_from=backward_from, key=gkey)


def _aux_network(blocks: Sequence[eqx.Module], skips: Sequence[tuple[int, int, eqx.Module]],
                 input_shape: Sequence[int], backward: str) -> Network:
    """The network of ``with_aux_neurons(blocks, skips)``, without top-down predictors."""
    refuse_top_down(backward)
    return Network(with_aux_neurons(blocks, skips), input_shape)


def resnet18(input_shape: Sequence[int], num_classes: int, *, act: str = "gelu", width_multiplier: float = 1.0,
             stem: str = "cifar", norm: str = "none", backward: str = "none", backward_from: int = 1,
             aux_neurons: bool = False, key: PRNGKeyArray) -> Network:
    """ResNet-18 (stem, 4 stages of 2 basic blocks, average-pool + linear head): 18 latent nodes, with
    the residual additions as skip edges node n-1 -> node n+1, or with ``aux_neurons`` carried by
    auxiliary neurons in the conv nodes (see module doc)."""
    return resnet(input_shape, num_classes, stages=(2, 2, 2, 2), act=act, width_multiplier=width_multiplier,
                  stem=stem, norm=norm, backward=backward, backward_from=backward_from, aux_neurons=aux_neurons,
                  key=key)


__all__ = ["resnet", "resnet18", "GlobalAvgPool", "AvgPoolDense", "AuxOpen", "AuxCarry", "Merged",
           "halves", "merge", "with_aux_neurons"]
