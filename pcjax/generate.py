"""Generation with the top-down predictors: clamp the label, infer the input.

A bidirectional network whose top-down predictors reach the input (``backward_from=0``) predicts
every node from the one above, nu_l = g_{l+1}(z_{l+1}), down to nu_0, a prediction of the image.
To generate an image of class y the output is clamped to z_L = y and the input node is *freed*:
the nodes start at the top-down sweep z_{L-1} = g_L(y), ..., z_0 = g_1(z_1), and T inference
steps lower the same bidirectional energy E(z_0, ..., z_{L-1}; y) that training used, now over the
input too. The result is the network's image for class y.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .errors import ConfigError
from .inference import Inference
from .network_energy import EnergySpec, network_energy


def top_down_sweep(model, y: Array) -> tuple[Array, ...]:
    """(z_0, ..., z_{L-1}) from the top-down predictors alone: z_{L-1} = g_L(y), z_l = g_{l+1}(z_{l+1})."""
    L = model.num_nodes
    if tuple(model.backward_nodes) != tuple(range(L)):
        raise ConfigError("generation needs a top-down predictor for every node down to the input: build the model "
                          f"with model.backward=learned and model.backward_from=0 (it has predictors for nodes "
                          f"{list(model.backward_nodes)})")
    values: list = [None] * L + [y]
    for l in range(L - 1, -1, -1):
        placeholder = [jnp.zeros((y.shape[0],) + (model.input_shape if k == 0 else model.node_shapes[k - 1]), y.dtype)
                       if values[k] is None else values[k] for k in range(L + 1)]
        values[l] = model.top_down(placeholder)[model.backward_nodes.index(l)]
    return tuple(values[:L])


def generate(model, y: Array, spec: EnergySpec, inference: Inference) -> Array:
    """Images of the classes ``y`` (one-hot, (B, C)): the input node after T inference steps with the
    output clamped to y, from the top-down sweep."""
    if not spec.bidirectional:
        raise ConfigError("generation relaxes the bidirectional energy: energy.lam must be > 0")
    init = top_down_sweep(model, y)
    L = model.num_nodes

    def energy_fn(free, precision):
        return network_energy(model, free[0], free[1:] + (y,), spec, precision=precision)

    # The input takes node 1's LALR multiplier (free position 0); use a constant rule for generation.
    free, _ = inference.run(energy_fn, init, free_nodes=tuple(range(L)), num_nodes=L)
    return free[0]


def class_means(x: Array, labels: Array, num_classes: int) -> Array:
    """Mean image of every class (num_classes, ...)."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
    return jnp.einsum("bc,b...->c...", onehot, x) / jnp.maximum(onehot.sum(0), 1).reshape((-1,) + (1,) * (x.ndim - 1))


def reconstruction_error(images: Array, means: Array) -> Array:
    """Per-class mean squared error between the generated image of class c and the mean image of class c."""
    return jnp.mean(jnp.square(images - means).reshape(images.shape[0], -1), axis=1)
