"""A model built from flax.nnx modules: one wrapped block per latent node.

Every block is ``nnx.Sequential(nnx.Linear, activation)`` wrapped with ``from_nnx`` (the first one
flattens the image first), so the network has exactly the node structure of pcjax's ``mlp`` and
PC or backprop trains the flax parameters. ``flax_mlp`` is registered as a model builder:

    python experiments/train.py plugins=[examples/flax_mlp.py] model.name=flax_mlp
"""

import math

import jax
from flax import nnx

import pcjax as pj
from pcjax.blocks import get_activation
from pcjax.interop.flax import from_nnx


def _flatten(x):
    return x.reshape(x.shape[0], -1)


def flax_mlp(input_shape, num_classes, *, width=128, depth=3, act="gelu", backward="none", key):
    """input -> width x depth -> classes; blocks are nnx Linear + activation.

    ``backward``: ``none``, ``learned`` (nnx Linear + activation top-down predictors) or ``tied``.
    """
    seeds = jax.random.randint(key, (depth + 1,), 0, 2**31 - 1).tolist()
    sizes = [math.prod(input_shape)] + [width] * depth + [num_classes]
    blocks = []
    for i in range(depth + 1):
        layers = [nnx.Linear(sizes[i], sizes[i + 1], rngs=nnx.Rngs(seeds[i]))]
        if i == 0:
            layers.insert(0, _flatten)
        if i < depth:
            layers.append(get_activation(act))
        blocks.append(from_nnx(nnx.Sequential(*layers)))
    if backward == "learned":  # top-down predictors node l+1 -> node l, themselves nnx modules
        back = [(l, from_nnx(nnx.Sequential(nnx.Linear(sizes[l + 1], sizes[l], rngs=nnx.Rngs(seeds[l] + 1)),
                                            get_activation(act)))) for l in range(1, depth + 1)]
    elif backward == "tied":  # nu_l = act(W_{l+1}^T z_{l+1}), through the wrapped block's linear part
        back = [(l, pj.Tied(act)) for l in range(1, depth + 1)]
    else:
        back = []
    return pj.Network(blocks, input_shape, backward=back)


pj.register_model("flax_mlp", flax_mlp)
