"""Backprop on the same model: jax.grad of the feed-forward loss, the same weight optimiser.

loss(theta) = (1/B) sum_b phi_out(mu_L(x_b; theta), y_b), phi_out the ``loss`` energy term
(``gaussian`` = 0.5 ||mu_L - y||^2 or ``cross_entropy``).
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array

from ..energies import get_energy
from ..network import Network
from ..runtime import Runtime, cast_floats
from .base import Algorithm, TrainState, accuracy, check_batch


class Backprop(Algorithm):
    """Backprop baseline (forward pass in the runtime's compute dtype when one is set)."""

    def __init__(self, weight_optim, total_steps: int, loss: str = "gaussian", name: str = "bp", *,
                 runtime: Runtime | None = None):
        super().__init__(weight_optim, total_steps, runtime=runtime, name=name)
        self.loss = loss
        get_energy(loss)

    def loss_fn(self, model: Network, x: Array, y: Array) -> tuple[Array, Array]:
        """Batch-mean feed-forward loss and the outputs."""
        dtype = self.runtime.dtype
        out = model(x) if dtype is None else cast_floats(model, dtype)(cast_floats(x, dtype)).astype(x.dtype)
        return get_energy(self.loss)(out, y).mean(), out

    def train_step(self, state: TrainState, x: Array, y: Array):
        """One backprop step; returns the new state and metrics."""
        check_batch(state.model, x, y)
        (loss, out), grads = eqx.filter_value_and_grad(self.loss_fn, has_aux=True)(state.model, x, y)
        state = self.apply_updates(state, grads)
        return state, {"loss": loss, "energy": loss, "acc": accuracy(out, y)}

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Feed-forward output mu_L."""
        return state.model(x)
