"""VGG networks: PCX's VGG-5 and VGG-7 exactly, and the VGG-9/11/13/16/19 family.

One latent node per block. A conv block is conv3x3 + bias + act (+ 2x2 max-pool inside the block);
the last block is ``Dense(in_shape=(H, W, C), classes)`` (it flattens) with identity activation.
No BatchNorm, biases kept (PCX). ``width_multiplier`` scales every conv channel count
(round(c * m), at least 1): 0.25 gives VGG-5 at 32-64-128-128. ``norm="group"|"layer"`` adds
per-sample normalisation inside every conv block (off by default; see ``pcjax.norm``).

VGG-5 (PCX):  conv(3->128, pad 1)+pool / 128->256 +pool / 256->512 +pool / 512->512 +pool /
              linear(512 * (s/16)^2 -> classes).  Nodes at 32x32: (16,16,128), (8,8,256),
              (4,4,512), (2,2,512), (classes,).
VGG-7 (PCX):  conv(3->128, pad 1)+pool / 128->128 / 128->256 +pool / 256->256 pad 0 /
              256->512 +pool / 512->512 pad 0 / linear.  Features 1x1x512 at 32x32, 4x4x512 at 56x56.
VGG-n:        the standard channel plans (below, "M" = max-pool after the preceding conv); the head
              is one linear layer, or ``Dense(features -> fc_hidden) + act`` then a linear layer
              when ``fc_hidden > 0`` (VGG-19 of the PCX skip experiment: fc_hidden=4096). The name
              counts the layers of the original VGG (with its 3 FC layers); here the head has 1 or 2.

Pooling: a pool that would shrink a side below 1 is skipped (at 32x32 all five pools of VGG-n fit,
and VGG-5/VGG-7 keep every pool at 32x32 and 56x56); side lengths are floored (7 -> 3).

``skip="long"`` (REFERENCE 2.6) adds one skip edge from node 3 (the output of the third conv block)
straight into the output node: mu_L = f_L(z_{L-1}) + W_s flatten(z_3) (W_s learned, no bias).
``aux_neurons=True`` carries that skip on auxiliary neurons in nodes 4 .. L-1 instead of an edge, so
its error takes as many inference steps as the main path's (``pcjax.models.aux_chain``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jaxtyping import PRNGKeyArray

from ..blocks import Dense
from ..errors import ConfigError, ShapeError
from ..network import Network
from ..norm import conv_block
from .aux_chain import refuse_top_down, with_aux_chain
from .topdown import build_network

SKIPS = ("none", "long")

# (out_channels, padding, pool) per conv block
VGG5 = ((128, 1, True), (256, 1, True), (512, 1, True), (512, 1, True))
VGG7 = ((128, 1, True), (128, 1, False), (256, 1, True), (256, 0, False), (512, 1, True), (512, 0, False))

PLANS: dict[int, tuple] = {
    9: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"),
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def channels(c: int, width_multiplier: float) -> int:
    """round(c * width_multiplier), at least 1."""
    return max(1, int(round(c * width_multiplier)))


def plan_to_spec(plan: Sequence) -> tuple[tuple[int, int, bool], ...]:
    """A VGG plan (channels and "M") as (out_channels, padding=1, pool) per conv block."""
    spec: list[list] = []
    for item in plan:
        if item == "M":
            if not spec:
                raise ConfigError("a VGG plan cannot start with a pool")
            spec[-1][2] = True
        else:
            spec.append([int(item), 1, False])
    return tuple(tuple(s) for s in spec)


def vgg(
    input_shape: Sequence[int],
    num_classes: int,
    spec: Sequence[tuple[int, int, bool]],
    *,
    act: str = "gelu",
    width_multiplier: float = 1.0,
    norm: str = "none",
    skip: str = "none",
    fc_hidden: int = 0,
    backward: str = "none",
    backward_from: int = 1,
    aux_neurons: bool = False,
    key: PRNGKeyArray,
) -> Network:
    """A VGG network from ``spec`` = (out_channels, padding, pool) per conv3x3 block (see module doc);
    ``aux_neurons``: the long skip carried by auxiliary neurons (``pcjax.models.aux_chain``)."""
    if len(input_shape) != 3:
        raise ShapeError(f"VGG models need image inputs of shape (H, W, C); got {tuple(input_shape)}")
    if skip not in SKIPS:
        raise ConfigError(f"model.skip={skip!r} is not valid for VGG; valid choices: {', '.join(SKIPS)}")
    if width_multiplier <= 0:
        raise ConfigError(f"model.width_multiplier must be > 0, got {width_multiplier}")
    h, w, c = (int(s) for s in input_shape)
    bkey, skey, gkey = jax.random.split(key, 3)
    keys = iter(jax.random.split(bkey, len(spec) + 2))
    blocks, shapes = [], []
    for out, pad, pool in spec:
        out = channels(out, width_multiplier)
        h, w = h + 2 * pad - 2, w + 2 * pad - 2
        if h < 1 or w < 1:
            raise ShapeError(f"input {tuple(input_shape)} is too small for this VGG: a padding-{pad} conv leaves {h}x{w}")
        pool = pool and h >= 2 and w >= 2
        if pool:
            h, w = h // 2, w // 2
        blocks.append(conv_block(c, out, 3, padding=pad, act=act, pool="max" if pool else None, norm=norm, key=next(keys)))
        shapes.append((h, w, out))
        c = out
    if fc_hidden:
        blocks.append(Dense((h, w, c), int(fc_hidden), act, key=next(keys)))
        blocks.append(Dense(int(fc_hidden), num_classes, "identity", key=next(keys)))
    else:
        blocks.append(Dense((h, w, c), num_classes, "identity", key=next(keys)))
    skips = []
    if skip == "long":
        if len(spec) < 3:
            raise ConfigError("model.skip=long needs at least 3 conv blocks")
        skips.append((3, len(blocks), Dense(shapes[2], num_classes, "identity", key=skey, use_bias=False)))
    if aux_neurons:
        if skip != "long":
            raise ConfigError("model.aux_neurons=true carries the long skip: set model.skip=long")
        refuse_top_down(backward)
        node_shapes = Network(blocks, input_shape, skips=skips).node_shapes
        return Network(with_aux_chain(blocks, skips[0], node_shapes), input_shape)
    return build_network(blocks, input_shape, skips=skips, act=act, backward=backward, backward_from=backward_from, key=gkey)


def vgg5(input_shape: Sequence[int], num_classes: int, *, act: str = "gelu", width_multiplier: float = 1.0,
         norm: str = "none", skip: str = "none", backward: str = "none", backward_from: int = 1,
         aux_neurons: bool = False, key: PRNGKeyArray) -> Network:
    """PCX VGG-5: 4 conv3x3 blocks (128, 256, 512, 512; each + act + max-pool 2) and a linear output."""
    return vgg(input_shape, num_classes, VGG5, act=act, width_multiplier=width_multiplier, norm=norm, skip=skip,
               backward=backward, backward_from=backward_from, aux_neurons=aux_neurons, key=key)


def vgg7(input_shape: Sequence[int], num_classes: int, *, act: str = "gelu", width_multiplier: float = 1.0,
         norm: str = "none", skip: str = "none", backward: str = "none", backward_from: int = 1,
         aux_neurons: bool = False, key: PRNGKeyArray) -> Network:
    """PCX VGG-7: 6 conv3x3 blocks (128+pool, 128, 256+pool, 256 pad 0, 512+pool, 512 pad 0), linear output."""
    return vgg(input_shape, num_classes, VGG7, act=act, width_multiplier=width_multiplier, norm=norm, skip=skip,
               backward=backward, backward_from=backward_from, aux_neurons=aux_neurons, key=key)


def _vgg_n(depth: int):
    def builder(input_shape: Sequence[int], num_classes: int, *, act: str = "gelu", width_multiplier: float = 1.0,
                norm: str = "none", skip: str = "none", fc_hidden: int = 0, backward: str = "none",
                backward_from: int = 1, aux_neurons: bool = False, key: PRNGKeyArray) -> Network:
        return vgg(input_shape, num_classes, plan_to_spec(PLANS[depth]), act=act, width_multiplier=width_multiplier,
                   norm=norm, skip=skip, fc_hidden=fc_hidden, backward=backward, backward_from=backward_from,
                   aux_neurons=aux_neurons, key=key)

    builder.__name__ = builder.__qualname__ = f"vgg{depth}"
    builder.__doc__ = (f"VGG-{depth}: conv3x3 plan {PLANS[depth]} (M = max-pool 2 in the preceding block), "
                       "then a linear head (or fc_hidden + linear); skip='long' adds the node-3 -> output skip.")
    return builder


vgg9, vgg11, vgg13, vgg16, vgg19 = (_vgg_n(d) for d in (9, 11, 13, 16, 19))

__all__ = ["vgg", "vgg5", "vgg7", "vgg9", "vgg11", "vgg13", "vgg16", "vgg19", "PLANS", "channels"]
