"""Augmented-Lagrangian predictive coding (PC-ALM; Seely & Gould 2026, arXiv 2605.31022).

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

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..inference import Inference, StepInfo, latent_step, mean_layer_energy
from ..network_energy import EnergySpec, LayerEnergies, broadcast, error_norm
from ..runtime import Runtime
from .base import Algorithm, TrainState, accuracy, check_batch


class ALMRelaxation(NamedTuple):
    """What PC-ALM's inference produced on one batch (all gradients stopped).

    ``states``: z_1..z_{L-1} after the final state step; ``duals``: lambda_1..lambda_{L-1} that
    the final state step (and the weight gradient) used; ``residuals``: r_l at the final states;
    ``infos``: the per-state-step trace (leading axis = budget).
    """

    states: tuple[Array, ...]
    duals: tuple[Array, ...]
    residuals: tuple[Array, ...]
    infos: StepInfo


def residuals(model, x: Array, states: tuple[Array, ...]) -> tuple[Array, ...]:
    """r_l = z_l - mu_l(z_0..z_{l-1}) for the hidden nodes l = 1..L-1."""
    values = (x,) + tuple(states)
    return tuple(z - model.predict(l, values).astype(z.dtype) for l, z in enumerate(states, start=1))


def alm_energy(model, x: Array, y: Array, states: tuple[Array, ...], duals: tuple[Array, ...], spec: EnergySpec,
               rho: float, precision: Array | None = None) -> tuple[Float[Array, "B"], LayerEnergies]:
    """Per-sample E_rho = w_L alpha_L phi_out(mu_L, y) + sum_{l<L} w_l alpha_l (rho/2) ||r_l + lambda_l/rho||^2.

    ``precision`` (w, shape (L,)) multiplies the per-node weights (an LALR precision schedule);
    the terms report each node's augmented term and the residual norm ||r_l|| (output: ||y - mu_L||).
    """
    L = model.num_nodes
    values = (x,) + tuple(states)
    alpha = jnp.asarray(broadcast(spec.alpha, L, "energy.alpha"))
    if precision is not None:
        alpha = alpha * precision
    forward, norms = [], []
    for l, (z, lam) in enumerate(zip(states, duals), start=1):
        mu = model.predict(l, values).astype(z.dtype)
        shifted = (z - mu + lam / rho).reshape(z.shape[0], -1)
        forward.append(0.5 * rho * jnp.sum(jnp.square(shifted), axis=1))
        norms.append(error_norm(mu, z))
    mu_out = model.predict(L, values).astype(y.dtype)
    forward.append(spec.term("output")(mu_out, y))
    norms.append(error_norm(mu_out, y))
    total = sum(alpha[i] * f for i, f in enumerate(forward))
    return total, LayerEnergies(tuple(forward), (), jnp.stack(norms))


class PCALM(Algorithm):
    """PC-ALM: state and dual variables freed by inference, weight step along dE_rho/dtheta."""

    def __init__(self, inference: Inference, energy: EnergySpec, weight_optim, total_steps: int, *, rho: float = 1.0,
                 dual_lr: float = 1.0, runtime: Runtime | None = None, name: str = "pc-alm"):
        super().__init__(weight_optim, total_steps, runtime=runtime, name=name)
        if not (rho > 0 and math.isfinite(rho)):
            raise ConfigError(f"algorithm.params.rho={rho} is not valid: the penalty weight must be a finite number "
                              "> 0 (the paper's default is 1)")
        if not (dual_lr >= 0 and math.isfinite(dual_lr)):
            raise ConfigError(f"algorithm.params.dual_lr={dual_lr} is not valid: the dual-ascent step must be a "
                              "finite number >= 0 (0 is PC with a rho-weighted energy; the paper's default is 1)")
        if inference.T < 1:
            raise ConfigError(f"algorithm.T={inference.T}: PC-ALM needs a budget of at least 1 state step "
                              "(the paper uses T = 2 x depth)")
        if inference.tol is not None:
            raise ConfigError("algorithm.tol: PC-ALM runs its full budget (dual steps interleave the state steps); "
                              "remove algorithm.tol")
        if not energy.is_term("hidden", "gaussian") or energy.bidirectional:
            raise ConfigError("PC-ALM's hidden terms are the augmented quadratic penalty (rho/2)||r + lambda/rho||^2: "
                              "use energy.hidden=gaussian and energy.lam=0 (the output term may be any energy)")
        if self.runtime.dtype is not None:
            raise ConfigError("algorithm pcalm runs in float32: remove Runtime(compute_dtype)")
        self.inference, self.energy, self.rho, self.dual_lr = inference, energy, float(rho), float(dual_lr)

    def relax(self, model, x: Array, y: Array) -> ALMRelaxation:
        """Inference: (state step, dual step) x (budget - 1), then a final state step."""
        inf, L = self.inference, model.num_nodes
        optimizer = inf.optim.make()
        states0 = tuple(jax.lax.stop_gradient(m) for m in model.feedforward(x)[:-1])
        duals0 = tuple(jnp.zeros_like(z) for z in states0)
        step = dict(T=inf.T, optimizer=optimizer, rule=inf.lalr, free_nodes=tuple(range(L - 1)), num_nodes=L,
                    latent_grad=inf.latent_grad)

        def state_step(z, zstate, lam, t):
            energy_fn = lambda free, precision: alm_energy(model, x, y, free, lam, self.energy, self.rho, precision)  # noqa: E731
            return latent_step(energy_fn, z, zstate, t, **step)

        def body(carry, t):
            z, zstate, lam = carry
            z, zstate, info = state_step(z, zstate, lam, t)
            lam = tuple(a + self.dual_lr * r for a, r in zip(lam, residuals(model, x, z)))
            return (z, zstate, lam), info

        (z, zstate, lam), infos = jax.lax.scan(body, (states0, optimizer.init(states0), duals0),
                                               jnp.arange(inf.T - 1), unroll=self.runtime.unroll)
        z, _, last = state_step(z, zstate, lam, jnp.asarray(inf.T - 1))
        infos = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), infos, last)
        z, lam = jax.lax.stop_gradient(z), jax.lax.stop_gradient(lam)
        return ALMRelaxation(z, lam, residuals(model, x, z), infos)

    def weight_gradient(self, model, x: Array, y: Array, relaxed: ALMRelaxation):
        """dE_rho/dtheta at the relaxed states and duals (batch mean), E_rho and its terms."""

        def loss(m):
            per_sample, terms = alm_energy(m, x, y, relaxed.states, relaxed.duals, self.energy, self.rho)
            return per_sample.mean(), terms

        (energy, terms), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
        return energy, terms, grads

    def train_step(self, state: TrainState, x: Array, y: Array, *, return_relaxation: bool = False):
        """One PC-ALM step; the new state and metrics (and the ``ALMRelaxation`` when asked)."""
        model = state.model
        check_batch(model, x, y)
        y = y.astype(x.dtype)
        mu_out = jax.lax.stop_gradient(model(x))
        relaxed = self.relax(model, x, y)
        energy, terms, grads = self.weight_gradient(model, x, y, relaxed)
        state = self.apply_updates(state, grads)
        trace = jnp.concatenate([relaxed.infos.layer_energy, mean_layer_energy(terms)[None]], axis=0)
        metrics = {"loss": self.energy.term("output")(mu_out, y).mean(), "energy": energy, "acc": accuracy(mu_out, y),
                   "layer_energy": trace, "error_norm": terms.error_norm,
                   "step_scale": relaxed.infos.step_scale[-1],
                   "dual_norm": jnp.stack([error_norm(0.0, a) for a in relaxed.duals])}  # RMS ||lambda_l||
        return (state, metrics, relaxed) if return_relaxation else (state, metrics)

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Feed-forward output mu_L (with lambda = 0 and no target the minimum is r = 0)."""
        return state.model(x)
