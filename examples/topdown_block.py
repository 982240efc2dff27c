"""A new block type with its own top-down predictor, and a model builder that uses both.

``Affine`` is a fully connected block, mu = act(flatten(x) @ W + b), written from scratch as any
block can be: an ``eqx.Module`` with ``__call__`` on batched arrays (and, optionally, ``linear``,
which tied top-down weights transpose). ``block.top_down(act)`` builds the block's own top-down
predictor: a ``TopDown`` module nu = act(z @ V + c) from the block's output node back to its
input node, whose weights V start as a copy of W^T and are then learned separately (tied at
initialisation, free afterwards). The ``affine_td`` builder adds one for every hidden node, so
the bidirectional energy (``energy.lam > 0``) trains them.

    python experiments/train.py plugins=[examples/topdown_block.py] model.name=affine_td
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp

import pcjax as pj
from pcjax.blocks import get_activation


class TopDown(eqx.Module):
    """Top-down predictor nu = act(z @ V + c) of a lower node from the node above it."""

    v: jax.Array
    c: jax.Array
    act: str = eqx.field(static=True)

    def __call__(self, z):
        return get_activation(self.act)(z @ self.v + self.c)


class Affine(eqx.Module):
    """mu = act(flatten(x) @ W + b), W ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), b = 0."""

    w: jax.Array
    b: jax.Array
    act: str = eqx.field(static=True)

    def __init__(self, n_in, n_out, act="identity", *, key):
        bound = 1.0 / math.sqrt(n_in)
        self.w = jax.random.uniform(key, (n_in, n_out), minval=-bound, maxval=bound)
        self.b = jnp.zeros((n_out,))
        self.act = act

    def linear(self, x):
        """flatten(x) @ W (no bias, no activation)."""
        return x.reshape(x.shape[0], -1) @ self.w

    def __call__(self, x):
        return get_activation(self.act)(self.linear(x) + self.b)

    def top_down(self, act="identity"):
        """This block's own top-down predictor (output node -> input node), initialised at W^T."""
        return TopDown(self.w.T, jnp.zeros((self.w.shape[0],)), act)


def affine_td(input_shape, num_classes, *, width=128, depth=3, act="gelu", backward="learned", key):
    """input -> width x depth -> classes with Affine blocks and top-down predictors on hidden nodes.

    ``backward``: ``learned`` (each block's own ``top_down`` predictor), ``tied`` or ``none``.
    """
    keys = jax.random.split(key, depth + 1)
    sizes = [math.prod(input_shape)] + [width] * depth + [num_classes]
    blocks = [Affine(sizes[i], sizes[i + 1], act if i < depth else "identity", key=keys[i]) for i in range(depth + 1)]
    # hidden node l (1 <= l < L) is predicted from node l+1 by block l+1 (blocks[l]) going backwards
    if backward == "learned":
        back = [(l, blocks[l].top_down(act)) for l in range(1, depth + 1)]
    elif backward == "tied":
        back = [(l, pj.Tied(act)) for l in range(1, depth + 1)]
    elif backward == "none":
        back = []
    else:
        raise ValueError(f"backward must be learned, tied or none; got {backward!r}")
    return pj.Network(blocks, input_shape, backward=back)


pj.register_model("affine_td", affine_td)
