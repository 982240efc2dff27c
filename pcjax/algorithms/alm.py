"""Augmented-Lagrangian predictive coding (PC-ALM; Seely & Gould 2026, arXiv 2605.31022): ``PC`` with
parameterisation ``StatesAndDuals``.

The free variables are the hidden node states z_1..z_{L-1} (initialised at the feed-forward pass)
*and* one dual variable per hidden node, lambda_l (initialised at 0). With the residuals
r_l = z_l - mu_l(z_{<l}) (skips included) and the output node held at the target y, the energy is
the augmented Lagrangian of "minimise the loss subject to r_l = 0":

    E_rho(z, lambda) = (1/B) sum_b [ phi_out(mu_L(z_{L-1}), y) + sum_{l<L} (rho/2) ||r_l + lambda_l / rho||^2 ]

(lambda = 0: the hidden terms are rho times the standard PC energy's, so rho = 1 *is* the clamped
PC energy). Inference alternates, ``budget - 1`` times, one state step on E_rho (the inference
part's optimiser and LALR rule) and one dual-ascent step lambda_l <- lambda_l + dual_lr * r_l,
then takes a final state step. The weights step along dE_rho/dtheta at the final states with the
duals that final state step used (the nodes and duals held fixed).

At a saddle point of the Lagrangian (r = 0, dE/dz = 0) the states are the feed-forward pass, the
duals are backprop's negative adjoints, lambda_l = -d phi_out / d z_l, and the weight gradient is
exactly the backprop gradient of the loss (the Lagrangian view of backprop); a finite budget
approaches it layer by layer, with the dual signal travelling ballistically instead of diffusing.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..inference import Inference
from ..network_energy import EnergySpec
from ..runtime import Runtime
from .parameterisation import ALMRelaxation, StatesAndDuals, alm_energy, residuals
from .pc import PC, PCConfig, feedforward
from .targets import Clamp
from .updates import Equilibrium, relax_problem

__all__ = ["PCALM", "ALMRelaxation", "alm_energy", "residuals"]


class PCALM(PC):
    """PC-ALM: state and dual variables freed by inference, weight step along dE_rho/dtheta
    (``PC`` with parameterisation ``StatesAndDuals``, target ``Clamp`` at beta = 1). ``parts`` replace
    other ``PCConfig`` fields (``lalr_weights``; the parameterisation refuses any other target or
    update rule, and ``eval_steps``)."""

    def __init__(self, inference: Inference, energy: EnergySpec, weight_optim, total_steps: int, *, rho: float = 1.0,
                 dual_lr: float = 1.0, runtime: Runtime | None = None, name: str = "pc-alm", **parts: Any):
        parameterisation = StatesAndDuals(float(rho), float(dual_lr))
        config = PCConfig(T=inference.T, latent=inference.optim, energy=energy, lalr=inference.lalr, beta=1.0,
                          latent_grad=inference.latent_grad, tol=inference.tol, tol_on=inference.tol_on,
                          min_steps=inference.min_steps, **{"target": Clamp(), "update": Equilibrium(), **parts},
                          parameterisation=parameterisation)
        super().__init__(config, weight_optim, total_steps, runtime=runtime, name=name, inference=inference)

    @property
    def energy(self) -> EnergySpec:
        return self.config.energy

    @property
    def rho(self) -> float:
        return self.config.parameterisation.rho

    @property
    def dual_lr(self) -> float:
        return self.config.parameterisation.dual_lr

    def relax(self, model, x: Array, y: Array) -> ALMRelaxation:
        """Inference alone: (state step, dual step) x (budget - 1), then a final state step (output held at y)."""
        latents0 = tuple(jax.lax.stop_gradient(m) for m in feedforward(model, x))
        problem = self.problem(model, x, y.astype(x.dtype), latents0, jnp.asarray(1.0, x.dtype))
        free, infos = relax_problem(self, problem, model)
        return ALMRelaxation(*free, residuals(model, x, free[0]), infos)

    def weight_gradient(self, model, x: Array, y: Array, relaxed: ALMRelaxation):
        """dE_rho/dtheta at the relaxed states and duals (batch mean), E_rho and its terms."""
        y = y.astype(x.dtype)

        def loss(m):
            per_sample, terms = alm_energy(m, x, y, relaxed.states, relaxed.duals, self.energy, self.rho)
            return per_sample.mean(), terms

        (energy, terms), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
        return energy, terms, grads
