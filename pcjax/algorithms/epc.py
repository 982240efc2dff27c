"""Error-optimised predictive coding (ePC; Goemaere et al. 2025).

The free variables are the prediction errors e_1..e_{L-1}, initialised at 0; the states follow by a
forward sweep z_l = mu_l(z_{<l}) + e_l (skips included), so the output z_L = mu_L(z_{L-1}) is a
function of every error and one gradient step reaches every layer. The energy is

    E(e) = sum_{l<L} alpha_l phi_hidden(mu_l, z_l) + beta * phi_out(mu_L, y) (+ lam top-down terms)

(0.5 ||e_l||^2 for the Gaussian hidden term). T optimiser steps on e lower it (each node's step
scaled by the LALR rule); the weights then step along the local PC gradient at the relaxed states,
(1/beta) dE/dtheta with the states held fixed. Same equilibrium as state PC (an affine change of
variables); as beta -> 0 the update tends to the backprop gradient.

``target`` says how beta places the label. ``"weighted"`` (the default): the output term is
beta * phi_out(mu_L, y), toward the label itself. ``"nudged"``: the output term has weight 1 and
its target is the nudged output y_t = mu_L(e = 0) + beta (y - mu_L(e = 0)) (``nudged_target``, as
state PC's ``Clamp`` places it), i.e. E(e) = sum_l 0.5 ||e_l||^2 + phi_out(mu_L, y_t), and the
weights step along (1/beta) dE/dtheta at (z, y_t): the maths of the plain-JAX calibration script
(``../shared/tools/calibrate_deep_pc.py``). Both give the same first relaxation step and are
identical at beta = 1; they differ in the output term's curvature (beta vs 1) and in its weight
gradient (mu_L - y vs (mu_L - y_t) / beta).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ConfigError
from ..inference import Inference, mean_layer_energy
from ..network_energy import EnergySpec, network_energy
from ..runtime import Runtime
from .base import Algorithm, TrainState, accuracy, check_batch
from .targets import nudged_target
from .updates import weight_gradient

TARGETS = ("weighted", "nudged")


def sweep(model, x: Array, errors: tuple[Array, ...]) -> tuple[Array, ...]:
    """States of a forward sweep with errors: z_l = mu_l(z_0..z_{l-1}) + e_l for l < L. Returns z_1..z_{L-1}."""
    values = [x]
    for l, e in enumerate(errors, start=1):
        values.append(model.predict(l, values) + e)
    return tuple(values[1:])


class EPC(Algorithm):
    """ePC: inference on the prediction errors, local PC weight update at the swept states."""

    def __init__(self, inference: Inference, energy: EnergySpec, weight_optim, total_steps: int, *,
                 beta: float = 1.0, target: str = "weighted", runtime: Runtime | None = None, name: str = "epc"):
        super().__init__(weight_optim, total_steps, runtime=runtime, name=name)
        if beta <= 0:
            raise ConfigError(f"algorithm.beta must be > 0 for ePC (the output term's weight), got {beta}")
        if target not in TARGETS:
            raise ConfigError(f"ePC target must be one of {', '.join(TARGETS)}; got {target!r}")
        if self.runtime.dtype is not None:
            raise ConfigError("algorithm epc runs in float32: remove Runtime(compute_dtype)")
        self.inference, self.energy, self.beta, self.target = inference, energy, beta, target

    def init(self, model, beta: float | None = None) -> TrainState:
        return super().init(model, self.beta if beta is None else beta)

    def train_step(self, state: TrainState, x: Array, y: Array):
        """One ePC step: relax the errors, then step the weights; returns the new state and metrics."""
        model, spec = state.model, self.energy
        check_batch(model, x, y)
        L = model.num_nodes
        y = y.astype(x.dtype)
        weights = jnp.ones((L,), x.dtype)
        if self.target == "weighted":  # beta * output term toward y
            weights = weights.at[-1].set(state.beta.astype(x.dtype))

        def energy_fn(errors, precision):
            return network_energy(model, x, sweep(model, x, errors) + (goal,), spec, precision=precision * weights)

        mu_out = jax.lax.stop_gradient(model(x))
        # nudged: output term of weight 1 toward y_t = mu_L + beta (y - mu_L)
        goal = nudged_target(mu_out, y, state.beta, spec) if self.target == "nudged" else y
        errors0 = tuple(jnp.zeros((x.shape[0],) + s, x.dtype) for s in model.node_shapes[:-1])
        errors, infos = self.inference.run(energy_fn, errors0, free_nodes=tuple(range(L - 1)), num_nodes=L,
                                           unroll=self.runtime.unroll)
        states = tuple(jax.lax.stop_gradient(z) for z in sweep(model, x, errors)) + (goal,)
        energy, terms, grads = weight_gradient(model, x, states, spec, state.beta, precision=weights)
        state = self.apply_updates(state, grads)
        trace = jnp.concatenate([infos.layer_energy, mean_layer_energy(terms)[None]], axis=0)
        rho = infos.step_scale[-1] if self.inference.T > 0 else jnp.ones((L,))
        loss = spec.term("output")(mu_out, y).mean()
        return state, {"loss": loss, "energy": energy, "acc": accuracy(mu_out, y), "layer_energy": trace,
                       "error_norm": terms.error_norm, "step_scale": rho}

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Feed-forward output mu_L (the errors' minimum without a target is e = 0)."""
        return state.model(x)
