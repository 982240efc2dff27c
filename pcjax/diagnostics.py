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


class Diagnostics:
    """Per-layer diagnostics of ``algorithm`` on a batch, with the probe step compiled once."""

    def __init__(self, algorithm, loss: str = "gaussian"):
        probe = copy.copy(algorithm)
        probe.__dict__ = {k: v for k, v in algorithm.__dict__.items() if not k.startswith(("_jit", "_jax"))}
        probe.weight_optim = _SGD
        self.probe, self.loss = probe, loss

        def run(state, x, y):
            start = probe.init(state.model, state.beta)
            new, metrics = probe.train_step(start, x, y)
            delta = jax.tree_util.tree_map(lambda a, b: a - b, eqx.filter(state.model, eqx.is_inexact_array),
                                           eqx.filter(new.model, eqx.is_inexact_array))
            bp = eqx.filter_grad(lambda m: get_energy(loss)(m(x), y).mean())(state.model)
            d_blocks, g_blocks = _per_block(delta), _per_block(bp)
            out = {"update_norm": jnp.stack([jnp.linalg.norm(d) for d in d_blocks]),
                   "bp_grad_norm": jnp.stack([jnp.linalg.norm(g) for g in g_blocks]),
                   "cosine_bp": jnp.stack([d @ g / (jnp.linalg.norm(d) * jnp.linalg.norm(g) + 1e-30)
                                           for d, g in zip(d_blocks, g_blocks)])}
            out.update({k: metrics[k] for k in ("layer_energy", "error_norm") if k in metrics})
            return out

        self._run = eqx.filter_jit(run)

    def __call__(self, state, x: Array, y: Array) -> dict:
        """The diagnostics as plain lists (JSON-ready)."""
        return {k: np.asarray(v).tolist() for k, v in self._run(state, x, y).items()}


def layer_diagnostics(algorithm, state, x: Array, y: Array, loss: str = "gaussian") -> dict:
    """Per-layer update norms, backprop gradient norms, their cosines, and the inference trace."""
    return Diagnostics(algorithm, loss)(state, x, y)
