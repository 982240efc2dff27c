"""What every algorithm shares: the training state, the weight-optimiser step, compiled steps.

An algorithm is a final class with ``init(model) -> TrainState``, a pure ``train_step(state, x, y)
-> (state, metrics)`` and ``eval_step(state, x) -> outputs``; ``x`` is a batch of inputs, ``y``
one-hot targets (B, C). Every algorithm updates the weights with its ``weight_optim`` (optax) through
``apply_updates``; the runtime policy (``pcjax.runtime.Runtime``) says how its step is computed.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from ..errors import ShapeError
from ..network import Network
from ..optim import WeightOptim
from ..runtime import Runtime


class TrainState(eqx.Module):
    """Everything a training step changes: model, weight-optimiser state, step counter, beta.

    ``beta`` is held in JAX's default float dtype (float64 under ``jax_enable_x64``), so that a beta
    of 0.1 is 0.1 in a float64 computation, not 0.10000000149.
    """

    model: Network
    opt_state: optax.OptState
    step: Array
    beta: Array


def trainable(model: Network):
    """The trainable arrays of ``model`` (every inexact array leaf)."""
    return eqx.filter(model, eqx.is_inexact_array)


def accuracy(out: Array, y: Array) -> Array:
    """Fraction of samples whose arg-max output is the arg-max target."""
    return jnp.mean(jnp.argmax(out, -1) == jnp.argmax(y, -1))


def check_batch(model: Network, x: Array, y: Array) -> None:
    """Shape/dtype checks of a training batch at the step boundary (trace time, no run-time cost)."""
    if tuple(x.shape[1:]) != model.input_shape:
        raise ShapeError(f"inputs must have shape (B, {', '.join(map(str, model.input_shape))}); got {tuple(x.shape)}")
    out = model.node_shapes[-1]
    if y.ndim != 2 or y.shape[0] != x.shape[0] or (y.shape[1],) != tuple(out):
        raise ShapeError(f"targets must be one-hot of shape ({x.shape[0]}, {out[0] if out else '?'}); got {tuple(y.shape)}")
    chex.assert_type([x, y], float)


class Algorithm(abc.ABC):
    """Base of the algorithms: the weight optimiser, the state, compiled steps; subclasses are final
    and implement ``train_step`` and ``eval_step`` only."""

    name: str
    weight_optim: WeightOptim
    total_steps: int
    runtime: Runtime

    def __init__(self, weight_optim: WeightOptim, total_steps: int, *, runtime: Runtime | None = None,
                 name: str = "algorithm"):
        self.weight_optim, self.total_steps, self.name = weight_optim, total_steps, name
        self.runtime = runtime or Runtime()

    @property
    def updates_per_step(self) -> int:
        """Weight updates per training step (the schedule spans total_steps x this)."""
        return 1

    @property
    def total_updates(self) -> int:
        return self.total_steps * self.updates_per_step

    def optimizer(self) -> optax.GradientTransformation:
        """The weight optimiser over the whole run's updates."""
        return self.weight_optim.make(self.total_updates)

    def init(self, model: Network, beta: float = 1.0) -> TrainState:
        """Fresh training state for ``model``."""
        return TrainState(model, self.optimizer().init(trainable(model)), jnp.zeros((), jnp.int32),
                          jnp.asarray(beta, dtype=float))

    def apply_updates(self, state: TrainState, grads, scale: Callable | None = None) -> TrainState:
        """One weight-optimiser step along ``grads`` (``scale`` maps the updates before they apply)."""
        updates, opt_state = self.optimizer().update(grads, state.opt_state, trainable(state.model))
        if scale is not None:
            updates = scale(updates)
        return TrainState(eqx.apply_updates(state.model, updates), opt_state, state.step + 1, state.beta)

    @abc.abstractmethod
    def train_step(self, state: TrainState, x: Array, y: Array) -> tuple[TrainState, dict]:
        """One training step on a batch; the new state and the step's metrics."""

    @abc.abstractmethod
    def eval_step(self, state: TrainState, x: Array) -> Array:
        """The outputs that evaluation reads (B, C)."""

    @property
    def jit_train_step(self):
        """``train_step`` compiled once (equinox filter-jit)."""
        if not hasattr(self, "_jit_train"):
            self._jit_train = eqx.filter_jit(self.train_step)
        return self._jit_train

    @property
    def jax_jit_train_step(self):
        """``train_step`` under plain ``jax.jit``: the same computation with less per-call Python
        overhead (needs every leaf of the state to be an array, true for the built-in blocks)."""
        if not hasattr(self, "_jax_jit_train"):
            self._jax_jit_train = jax.jit(self.train_step)
        return self._jax_jit_train

    @property
    def jit_eval_step(self):
        """``eval_step`` compiled once."""
        if not hasattr(self, "_jit_eval"):
            self._jit_eval = eqx.filter_jit(self.eval_step)
        return self._jit_eval
