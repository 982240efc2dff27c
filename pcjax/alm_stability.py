"""Linear stability of PC-ALM's relaxation: the spectral radius of its state-dual iteration at the saddle.

One iteration of PC-ALM's inference (``StatesAndDuals.relax``, state SGD at rate eta, dual rate alpha)
maps v = (z, lambda) to

    z' = z - eta * dE_rho/dz (z, lambda),        lambda' = lambda + alpha * r(z'),

with E_rho the per-sample augmented Lagrangian summed over the batch (``latent_grad="sample"``) and
r_l(z) = z_l - mu_l(z_{l-1}). The saddle v* (r = 0 and dE_rho/dz = 0) is a fixed point for every eta.
Near it v' - v* ~ J_eta (v - v*), J_eta = dF/dv at v*: the iteration converges if the spectral radius
rho(J_eta) < 1 and amplifies any perturbation along an eigenvector whose |eigenvalue| exceeds 1. The
saddle does not depend on eta, so one saddle gives rho(J_eta) for every state rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .algorithms.parameterisation import residuals

Free = Any  # (states, duals): two tuples of (B, width) arrays


def _state_grad(problem, states, duals):
    """dE_rho/dz at (z, lambda): the gradient of the per-sample energy summed over the batch."""
    return jax.grad(lambda s: problem.energy_fn((s, tuple(duals)), None)[0].sum())(tuple(states))


def state_step(problem, eta: float) -> Callable[[Free], Free]:
    """The relaxation's state step: z - eta dE_rho/dz at fixed lambda (also its final step)."""

    def step(free: Free) -> Free:
        states, duals = free
        return tuple(z - eta * g for z, g in zip(states, _state_grad(problem, states, duals))), duals

    return step


def iteration_map(problem, model, x, eta: float, dual_lr: float) -> Callable[[Free], Free]:
    """F_eta(z, lambda) = (z', lambda + alpha r(z')), z' = z - eta dE_rho/dz: one (state step, dual step) of
    ``StatesAndDuals.relax`` with plain state SGD (constant LALR). ``problem``: the algorithm's
    ``Problem`` on the batch (``PC.problem``)."""
    state = state_step(problem, eta)

    def step(free: Free) -> Free:
        new, duals = state(free)
        return new, tuple(a + dual_lr * r for a, r in zip(duals, residuals(model, x, new)))

    return step


def saddle_gap(problem, model, x, free: Free) -> tuple[float, float]:
    """(max |r_l|, max |dE_rho/dz_l|) at ``free``: both 0 at the saddle."""
    states, duals = free
    g = _state_grad(problem, states, duals)
    r = residuals(model, x, tuple(states))
    return (float(max(jnp.abs(a).max() for a in r)), float(max(jnp.abs(a).max() for a in g)))


def find_saddle(step: Callable[[Free], Free], free: Free, steps: int) -> Free:
    """``steps`` iterations of ``step`` (a stable ``iteration_map``) from ``free``, compiled as one loop."""
    return jax.jit(lambda v: jax.lax.fori_loop(0, steps, lambda _, u: step(u), v))(free)


def spectral_radius(step: Callable[[Free], Free], fixed: Free, key, iters: int = 400) -> float:
    """rho(dF/dv) at the fixed point ``fixed`` by power iteration on Jacobian-vector products:
    v_k = J v_{k-1} / ||J v_{k-1}||, and rho = the geometric mean of the growth ||J v_{k-1}|| over the
    second half of the iterations (a complex pair of dominant eigenvalues makes single factors oscillate;
    their mean over many steps still converges to |lambda_max|)."""
    leaves, tree = jax.tree_util.tree_flatten(fixed)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])

    def norm(t):
        return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(t)))

    def body(carry, _):
        u = carry
        ju = jax.jvp(step, (fixed,), (u,))[1]
        n = norm(ju)
        return jax.tree_util.tree_map(lambda a: a / n, ju), jnp.log(n)

    v = jax.tree_util.tree_map(lambda a: a / norm(v), v)
    _, logs = jax.jit(lambda u: jax.lax.scan(body, u, None, length=iters))(v)
    return float(jnp.exp(jnp.mean(logs[iters // 2:])))
