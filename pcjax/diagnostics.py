"""Depth diagnostics: what the error signal and the weight updates look like layer by layer.

On one batch, for any algorithm:

* ``update_norm[l]``: ||Delta theta_l||, the norm of block l's weight update direction (the
  algorithm's own gradient, e.g. (1/beta) dE/dtheta_l for PC, before the optimiser);
* ``bp_grad_norm[l]``: ||dL/dtheta_l|| of backprop on the same model, batch and output loss;
* ``cosine_bp[l]``: cos(Delta theta_l, dL/dtheta_l), how well block l's update follows backprop;
* ``layer_energy``: (T + 1, L) per-node energy at every inference step (the error wave), and
  ``error_norm[l]``: the prediction-error norm ||e_l|| after inference.

The update direction is read off one step of the algorithm with plain SGD at rate 1 (so that
theta - theta' is exactly the gradient the algorithm applies), which works for every algorithm,
plugins included.
"""

from __future__ import annotations

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .energies import get_energy
from .optim import WeightOptim

_SGD = WeightOptim(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant")


def _per_block(tree) -> list[Array]:
    return [jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_inexact_array))]
                            or [jnp.zeros((0,))]) for b in tree.blocks]


def update_direction(algorithm, state, x: Array, y: Array):
    """(theta - theta') after one step of ``algorithm`` with SGD at rate 1, and the step's metrics."""
    probe = copy.copy(algorithm)
    probe.__dict__ = {k: v for k, v in algorithm.__dict__.items() if not k.startswith("_jit") and not k.startswith("_jax")}
    probe.weight_optim = _SGD
    start = probe.init(state.model, float(state.beta)) if hasattr(state, "beta") else probe.init(state.model)
    new, metrics = eqx.filter_jit(probe.train_step)(start, x, y)
    delta = jax.tree_util.tree_map(lambda a, b: a - b, eqx.filter(state.model, eqx.is_inexact_array),
                                   eqx.filter(new.model, eqx.is_inexact_array))
    return delta, metrics


def layer_diagnostics(algorithm, state, x: Array, y: Array, loss: str = "gaussian") -> dict:
    """Per-layer update norms, backprop gradient norms, their cosines, and the inference trace."""
    delta, metrics = update_direction(algorithm, state, x, y)
    bp = eqx.filter_jit(eqx.filter_grad(lambda m: get_energy(loss)(m(x), y).mean()))(state.model)
    out = {}
    d_blocks, g_blocks = _per_block(delta), _per_block(bp)
    out["update_norm"] = [float(jnp.linalg.norm(d)) for d in d_blocks]
    out["bp_grad_norm"] = [float(jnp.linalg.norm(g)) for g in g_blocks]
    out["cosine_bp"] = [float(d @ g / (jnp.linalg.norm(d) * jnp.linalg.norm(g) + 1e-30)) for d, g in zip(d_blocks, g_blocks)]
    for key in ("layer_energy", "error_norm"):
        if key in metrics:
            out[key] = np.asarray(metrics[key]).tolist()
    return out
