"""Parameterisations: what inference frees in a PC-family algorithm.

One PC-family step (``pcjax.algorithms.pc.PC``) runs the same skeleton for every method: the
feed-forward values mu_1..mu_L; the target part turns the label into a ``Goal`` (the held output
z_L and the per-node weights w); the *parameterisation* turns the goal into the problem inference
solves: the free variables v, their initial values, the node values z(v) and the energy E(v); the
update rule relaxes v (the inference part: T optimiser steps, each leaf's step scaled by its node's
LALR multiplier) and steps the weights along (1/beta) dE/dtheta at the relaxed values, held fixed.

* ``States`` (predictive coding): v = (z_1..z_{L-1}), z(v) = v, initialised at the feed-forward
  pass; E(v) = sum_l w_l alpha_l phi_l(mu_l(z_{<l}), z_l).
* ``Errors`` (ePC; Goemaere et al. 2025): v = (e_1..e_{L-1}), initialised at 0, and the states by a
  forward sweep z_l = mu_l(z_{<l}) + e_l (skips included); the same E at z(v). One gradient step
  reaches every layer; the minimum is the same as with ``States`` (z = sweep(e) is a bijection).
* ``StatesAndDuals`` (PC-ALM; Seely & Gould 2026): v = (z, lambda), lambda_l initialised at 0;
  E_rho(z, lambda) = w_L phi_out(mu_L, z_L) + sum_{l<L} w_l alpha_l (rho/2) ||r_l + lambda_l / rho||^2
  with r_l = z_l - mu_l(z_{<l}); the optimiser steps z only, and between state steps a dual-ascent
  step lambda_l <- lambda_l + dual_lr r_l (its ``relax``).

A parameterisation is a small frozen dataclass implementing ``Parameterisation``; a new way of
freeing the network is one such class (one file), used by ``PC`` with every part it accepts.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..error_front import error_nodes
from ..errors import ConfigError
from ..inference import ActiveSet, Inference, StepInfo, latent_step, schedule_runs
from ..lalr import LALRRule
from ..network_energy import EnergySpec, LayerEnergies, broadcast, error_norm, network_energy
from ..runtime import Runtime
from .targets import Goal, Problem, energy_at

if TYPE_CHECKING:
    from .pc import PCConfig

#: The free variables: a tuple of arrays (``States``, ``Errors``) or a pytree of them (``StatesAndDuals``: (z, lambda)).
Free = Any


def _times(precision: Array | None, weights: Array | None) -> Array | None:
    """precision x weights, either of them optional."""
    if weights is None:
        return precision
    return weights if precision is None else precision * weights


class Relaxation(NamedTuple):
    """What inference produced on one batch (``PC.train_step(..., return_relaxation=True)``).

    ``free``: the relaxed free variables; ``latents``: the node values z_1..z_L the weight update
    saw; ``infos``: the per-inference-step trace (leading axis T).
    """

    free: Free
    latents: tuple[Array, ...]
    infos: StepInfo


class Parameterisation(abc.ABC):
    """What inference frees: the free variables, the node values they imply and their energy.

    Subclasses implement ``init``, ``free_nodes`` and ``latents``; the energy (``energy``), the
    energy the weight update differentiates (``weight_energy``), the relaxation (``relax``), the
    extra metrics and the refusal of parts (``check``) have defaults that suit any parameterisation
    whose energy is the network energy at ``latents(v)``.
    """

    #: the algorithm's name when it uses this parameterisation with the standard update rule
    label: ClassVar[str] = "pc"
    #: whether the error front (``Runtime(error_front=True)``) applies: it skips the terms that are
    #: exactly zero after a feed-forward initialisation of the *states*
    front_ok: ClassVar[bool] = False

    def check(self, config: PCConfig, inference: Inference, runtime: Runtime) -> None:
        """Refuse (``ConfigError``, naming both) the parts of ``config`` (a ``PCConfig``: target,
        update rule, energy, ``eval_steps``), the inference part or the runtime policy that this
        parameterisation cannot work with. The default accepts every part."""

    @abc.abstractmethod
    def init(self, model, x: Array, latents0: tuple[Array, ...], goal: Goal) -> Free:
        """v_0, the initial free variables, from the feed-forward values mu_1..mu_L (gradient stopped)."""

    @abc.abstractmethod
    def free_nodes(self, num_nodes: int, goal: Goal) -> tuple[int, ...]:
        """For every free leaf that the optimiser steps, its node (0-based: node l is l - 1), whose
        LALR multiplier rho_l scales the step."""

    @abc.abstractmethod
    def latents(self, model, x: Array, free: Free, goal: Goal) -> tuple[Array, ...]:
        """z(v) = (z_1, ..., z_L): the node values the free variables imply, the held output
        ``goal.value`` last when the output is not free."""

    def energy(self, model, x: Array, free: Free, goal: Goal, precision: Array | None = None,
               nodes: Sequence[int] | None = None, dtype=None) -> tuple[Float[Array, "B"], LayerEnergies]:
        """Per-sample E(v) = sum_l p_l w_l alpha_l F_l(z(v)) + sum_l lambda_l G_l(z(v)) [+ c(z_L)].

        F_l = phi_l(mu_l, z_l) at z = ``latents(v)``, p the inference's precision schedule, w the
        goal's weights, c the goal's cost of a free output; ``nodes``: only those forward terms
        (the error front); ``dtype``: predictions in that compute dtype.
        """
        latents = self.latents(model, x, free, goal)
        per_sample, terms = energy_at(model, x, latents, goal.spec, precision=_times(precision, goal.weights),
                                      nodes=nodes, dtype=dtype)
        if goal.cost is not None:
            per_sample = per_sample + goal.cost(latents[-1])
        return per_sample, terms

    def weight_energy(self, model, x: Array, free: Free, latents: tuple[Array, ...], goal: Goal, *,
                      precision: Array | None = None, pred: tuple[Array, ...] | None = None,
                      nodes: Sequence[int] | None = None, dtype=None) -> tuple[Float[Array, "B"], LayerEnergies]:
        """Per-sample E(theta) = sum_l p_l w_l alpha_l phi_l(mu_l(theta), z_l) + top-down terms at fixed
        node values ``latents`` (= z(v) at the relaxed v, gradient stopped): what the weight update
        differentiates. Predictions from ``pred`` when given (the forward update)."""
        return energy_at(model, x, latents, goal.spec, precision=_times(precision, goal.weights), pred=pred,
                         nodes=nodes, dtype=dtype)

    def relax(self, model, x: Array, goal: Goal, problem: Problem, inference: Inference, *, unroll: int | bool = 1,
              schedule: Sequence[ActiveSet] = (), rule: LALRRule | None = None,
              T: int | None = None) -> tuple[Free, StepInfo]:
        """Inference: T optimiser steps v <- v + update(rho dE/dv) from v_0 (``Inference.run``)."""
        return inference.run(problem.energy_fn, problem.init, free_nodes=problem.free_nodes,
                             num_nodes=model.num_nodes, unroll=unroll, schedule=schedule, rule=rule, T=T)

    def metrics(self, free: Free) -> dict[str, Array]:
        """Extra metrics of the relaxed free variables (none by default)."""
        return {}

    def relaxation(self, model, x: Array, goal: Goal, free: Free, infos: StepInfo) -> Any:
        """What ``train_step(..., return_relaxation=True)`` returns: a ``Relaxation`` by default."""
        latents = self.latents(model, x, free, goal)
        return Relaxation(free, tuple(jax.lax.stop_gradient(z) for z in latents), infos)

    def problem(self, model, x: Array, goal: Goal, latents0: tuple[Array, ...], runtime: Runtime) -> Problem:
        """The ``Problem`` of one batch: these methods bound to the model, batch and goal."""
        dtype = runtime.dtype

        def energy_fn(free, precision, nodes=None):
            return self.energy(model, x, free, goal, precision, nodes=nodes, dtype=dtype)

        def latents(free):
            return self.latents(model, x, free, goal)

        def weight_energy(m, free, *, precision=None, pred=None, nodes=None, dtype=None):
            fixed = tuple(jax.lax.stop_gradient(z) for z in latents(free))
            return self.weight_energy(m, x, free, fixed, goal, precision=precision, pred=pred, nodes=nodes,
                                      dtype=dtype)

        problem = Problem(self.init(model, x, latents0, goal), self.free_nodes(model.num_nodes, goal), energy_fn,
                          latents, goal.spec, goal.clamped, goal.weights, None, weight_energy)

        def relax(inference, **kw):
            return self.relax(model, x, goal, problem, inference, **kw)

        return problem._replace(relax=relax)


# --------------------------------------------------------------------------------------- states
@dataclass(frozen=True)
class States(Parameterisation):
    """Predictive coding: the node values are free, v = (z_1..z_{L-1}) (and z_L when the output is
    free), initialised at the feed-forward pass, z(v) = v."""

    label: ClassVar[str] = "pc"
    front_ok: ClassVar[bool] = True

    def init(self, model, x: Array, latents0: tuple[Array, ...], goal: Goal) -> tuple[Array, ...]:
        """v_0 = (mu_1..mu_{L-1}) (and mu_L when the output is free)."""
        return tuple(latents0[:-1]) if goal.clamped else tuple(latents0)

    def free_nodes(self, num_nodes: int, goal: Goal) -> tuple[int, ...]:
        return tuple(range(num_nodes - 1 if goal.clamped else num_nodes))

    def latents(self, model, x: Array, free: tuple[Array, ...], goal: Goal) -> tuple[Array, ...]:
        """z = v (+ the held output)."""
        return tuple(free) + (goal.value,) if goal.clamped else tuple(free)


# --------------------------------------------------------------------------------------- errors
def sweep(model, x: Array, errors: tuple[Array, ...]) -> tuple[Array, ...]:
    """States of a forward sweep with errors: z_l = mu_l(z_0..z_{l-1}) + e_l for l = 1..len(errors)."""
    values = [x]
    for l, e in enumerate(errors, start=1):
        values.append(model.predict(l, values) + e)
    return tuple(values[1:])


def sweep_predictions(model, x: Array, errors: tuple[Array, ...]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """The forward sweep and its predictions: (z_1..z_k, mu_1..mu_L) with z_l = mu_l + e_l, k = len(errors),
    mu_l = mu_l(z_0..z_{l-1}); mu_L (k = L - 1) is the output's prediction from the swept z_{L-1}."""
    values, mus = [x], []
    for l, e in enumerate(errors, start=1):
        mus.append(model.predict(l, values))
        values.append(mus[-1] + e)
    if len(errors) < model.num_nodes:
        mus.append(model.predict(model.num_nodes, values))
    return tuple(values[1:]), tuple(mus)


@dataclass(frozen=True)
class Errors(Parameterisation):
    """ePC: the prediction errors are free, v = (e_1..e_{L-1}) (and e_L when the output is free),
    initialised at 0; z(v) by the forward sweep z_l = mu_l(z_{<l}) + e_l.

    ``reuse_sweep``: the energy's terms phi(mu_l, z_l) take the sweep's own predictions mu_l instead
    of predicting again from the swept states (the same numbers). Autodiff then follows one chain of
    cotangents through each prediction instead of two whose difference cancels analytically (the
    energy's -J_l^T dphi/dmu_l and the sweep's J_l^T dE/dz_l), about a third less work per
    inference step on a deep network; the gradient is the same up to floating-point rounding (the
    two chains are summed before, not after, each prediction's transpose). Off by default: it changes
    results by that rounding.
    """

    reuse_sweep: bool = False
    label: ClassVar[str] = "epc"

    def energy(self, model, x: Array, free: tuple[Array, ...], goal: Goal, precision: Array | None = None,
               nodes: Sequence[int] | None = None, dtype=None) -> tuple[Float[Array, "B"], LayerEnergies]:
        """E(e) at z = sweep(e) (``Parameterisation.energy``); with ``reuse_sweep``, F_l = phi_l(mu_l, z_l)
        with mu_l the sweep's predictions."""
        if not self.reuse_sweep:
            return super().energy(model, x, free, goal, precision, nodes=nodes, dtype=dtype)
        if nodes is not None or dtype is not None:
            raise ConfigError("parameterisation Errors(reuse_sweep=True) computes every term in float32 (no error "
                              "front, no compute dtype)")
        states, mus = sweep_predictions(model, x, free)
        latents = states + (goal.value,) if goal.clamped else states
        per_sample, terms = network_energy(model, x, latents, goal.spec, precision=_times(precision, goal.weights),
                                           mus=mus)
        if goal.cost is not None:
            per_sample = per_sample + goal.cost(latents[-1])
        return per_sample, terms

    def check(self, config: PCConfig, inference: Inference, runtime: Runtime) -> None:
        if runtime.dtype is not None:
            raise ConfigError("algorithm epc (parameterisation Errors) runs in float32: remove Runtime(compute_dtype)")
        if config.update.steps_during_inference:
            raise ConfigError("update rule Incremental cannot be combined with parameterisation Errors (ePC): iPC "
                              "steps the weights between inference steps with the node values held, but with the "
                              "errors free a weight step moves every state z = mu(theta) + e (use parameterisation "
                              "States)")
        if config.eval_steps:
            raise ConfigError("algorithm.eval_steps relaxes the node states at evaluation: it needs parameterisation "
                              "States, not Errors (ePC evaluates the feed-forward output)")

    def init(self, model, x: Array, latents0: tuple[Array, ...], goal: Goal) -> tuple[Array, ...]:
        """v_0 = 0 (the sweep starts at the feed-forward pass)."""
        shapes = model.node_shapes if not goal.clamped else model.node_shapes[:-1]
        return tuple(jnp.zeros((x.shape[0],) + tuple(s), x.dtype) for s in shapes)

    def free_nodes(self, num_nodes: int, goal: Goal) -> tuple[int, ...]:
        return tuple(range(num_nodes - 1 if goal.clamped else num_nodes))

    def latents(self, model, x: Array, free: tuple[Array, ...], goal: Goal) -> tuple[Array, ...]:
        """z = sweep(e) (+ the held output)."""
        states = sweep(model, x, free)
        return states + (goal.value,) if goal.clamped else states


# ------------------------------------------------------------------------------- states and duals
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


@eqx.filter_custom_vjp
def held_prediction(inputs: tuple[Array | None, ...], prediction, mu: Array) -> Array:
    """mu_l(z_{<l}) whose value is already known: returns ``mu`` (computed at these ``inputs``, the node
    values with every value ``prediction`` (``Network.prediction(l)``) does not read as None) and
    differentiates as mu_l does with respect to the inputs (the vector-Jacobian product of
    ``prediction``), without computing the prediction again. ``prediction`` holds only block l and the
    skip projections into l, so tracing L of these costs O(L), not O(L^2) as the whole network would.

    Only for gradients with respect to node values: differentiating the weights through it raises
    (equinox refuses a tangent in the non-differentiated arguments), it never gives a silent zero."""
    return mu


@held_prediction.def_fwd
def _held_prediction_fwd(perturbed, inputs, prediction, mu):
    return mu, None


@held_prediction.def_bwd
def _held_prediction_bwd(_, cotangent, perturbed, inputs, prediction, mu):
    _, vjp = jax.vjp(prediction, inputs)
    (grads,) = vjp(cotangent)
    return jax.tree_util.tree_map(lambda g, p: g if p else None, grads, perturbed)


def _predict(model, l: int, values: Sequence[Array], held: Sequence[Array] | None) -> Array:
    """mu_l at ``values``: computed, or with ``held`` (mu_1..mu_L at these values) taken from it and
    differentiated with respect to the values it reads (``held_prediction``)."""
    if held is None:
        return model.predict(l, values)
    prediction = model.prediction(l)
    reads = prediction.reads
    return held_prediction(tuple(v if i in reads else None for i, v in enumerate(values[:l])), prediction,
                           held[l - 1])


def residuals(model, x: Array, states: tuple[Array, ...], nodes: Sequence[int] | None = None) -> tuple[Array, ...]:
    """r_l = z_l - mu_l(z_0..z_{l-1}) for the hidden nodes l = 1..L-1; with ``nodes`` (the error front)
    only those are computed and the others are returned as 0 (exact where the front has not reached)."""
    values = (x,) + tuple(states)
    keep = range(1, len(states) + 1) if nodes is None else set(nodes)
    return residuals_from(states, [model.predict(l, values) if l in keep else None
                                   for l in range(1, len(states) + 1)], nodes)


def residuals_from(states: Sequence[Array], predictions: Sequence[Array | None],
                   nodes: Sequence[int] | None = None) -> tuple[Array, ...]:
    """r_l = z_l - mu_l for l = 1..L-1 from predictions already formed (mu_1.., an extra mu_L ignored);
    with ``nodes`` only those, the others 0 (their predictions are not read)."""
    keep = None if nodes is None else set(nodes)
    return tuple(z - mu.astype(z.dtype) if keep is None or l in keep else jnp.zeros_like(z)
                 for l, (z, mu) in enumerate(zip(states, predictions), start=1))


def predictions_at(model, x: Array, states: tuple[Array, ...], previous: Sequence[Array] | None = None,
                   nodes: Sequence[int] | None = None) -> tuple[Array, ...]:
    """mu_1..mu_L at node values (x, z_1..z_{L-1}); with ``nodes`` (the error front's residual nodes)
    only those and the output are computed, the others taken from ``previous`` (their sources have
    not moved since it was formed)."""
    values = (x,) + tuple(states)
    if nodes is None:
        return model.predictions(values)
    L = model.num_nodes
    keep = set(nodes) | {L}
    return tuple(model.predict(l, values) if l in keep else previous[l - 1] for l in range(1, L + 1))


def residual_front(model, active: ActiveSet) -> tuple[int, ...]:
    """The hidden nodes whose residual can be non-zero once the latents ``active.grads`` have moved
    (and none outside them: the front's sets only grow): the moved nodes and the nodes they feed
    (the next node and skip targets). PC-ALM's dual step after an error-front step computes these."""
    L = model.num_nodes
    front = error_nodes(L, model.skip_edges, {i + 1 for i in active.grads}) | set(active.terms)
    return tuple(sorted(l for l in front if l < L))


def alm_energy(model, x: Array, y: Array, states: tuple[Array, ...], duals: tuple[Array, ...], spec: EnergySpec,
               rho: float, precision: Array | None = None, nodes: Sequence[int] | None = None,
               held: Sequence[Array] | None = None) -> tuple[Float[Array, "B"], LayerEnergies]:
    """Per-sample E_rho = w_L alpha_L phi_out(mu_L, y) + sum_{l<L} w_l alpha_l (rho/2) ||r_l + lambda_l/rho||^2.

    ``precision`` (w, shape (L,)) multiplies the per-node weights (an LALR precision schedule);
    the terms report each node's augmented term and the residual norm ||r_l|| (output: ||y - mu_L||).
    ``nodes`` (the error front): only those hidden terms are computed, the others reported as 0 (they
    are exactly 0 where the front has not reached: r_l = 0 and lambda_l = 0). ``held``: the
    predictions mu_1..mu_L at these states, already computed (the relaxation's dual step formed
    them): the energy and its gradient in the states then need no forward pass (``held_prediction``;
    the weight gradient must be taken without them).
    """
    L = model.num_nodes
    values = (x,) + tuple(states)
    alpha = jnp.asarray(broadcast(spec.alpha, L, "energy.alpha"))
    if precision is not None:
        alpha = alpha * precision
    forward, norms = [], []
    keep = None if nodes is None else set(nodes)
    for l, (z, lam) in enumerate(zip(states, duals), start=1):
        if keep is not None and l not in keep:
            forward.append(jnp.zeros(z.shape[:1], z.dtype))
            norms.append(jnp.zeros((), jnp.float32))
            continue
        mu = _predict(model, l, values, held).astype(z.dtype)
        shifted = (z - mu + lam / rho).reshape(z.shape[0], -1)
        forward.append(0.5 * rho * jnp.sum(jnp.square(shifted), axis=1))
        norms.append(error_norm(mu, z))
    mu_out = _predict(model, L, values, held).astype(y.dtype)
    forward.append(spec.term("output")(mu_out, y))
    norms.append(error_norm(mu_out, y))
    total = sum(alpha[i] * f for i, f in enumerate(forward))
    return total, LayerEnergies(tuple(forward), (), jnp.stack(norms))


@dataclass(frozen=True)
class StatesAndDuals(Parameterisation):
    """PC-ALM: the node states and one dual variable per hidden node are free, v = (z, lambda),
    z_0 the feed-forward pass and lambda_0 = 0; E is the augmented Lagrangian E_rho(z, lambda) of
    "minimise the output loss subject to r_l = 0" (``alm_energy``).

    Inference alternates, T - 1 times, one state step on E_rho (the inference part's optimiser and
    LALR rule; lambda held) and one dual-ascent step lambda_l <- lambda_l + dual_lr r_l, then takes a
    final state step; the weights step along dE_rho/dtheta at the final z with the duals that final
    step used. lambda = 0 and rho = 1 is the clamped state-PC energy; dual_lr = 0 is state PC on
    the rho-weighted energy.
    """

    rho: float = 1.0
    dual_lr: float = 1.0
    label: ClassVar[str] = "pc-alm"
    front_ok: ClassVar[bool] = True

    def __post_init__(self):
        if not (self.rho > 0 and math.isfinite(self.rho)):
            raise ConfigError(f"algorithm.params.rho={self.rho} is not valid: the penalty weight must be a finite "
                              "number > 0 (the paper's default is 1)")
        if not (self.dual_lr >= 0 and math.isfinite(self.dual_lr)):
            raise ConfigError(f"algorithm.params.dual_lr={self.dual_lr} is not valid: the dual-ascent step must be a "
                              "finite number >= 0 (0 is PC with a rho-weighted energy; the paper's default is 1)")

    def check(self, config: PCConfig, inference: Inference, runtime: Runtime) -> None:
        if inference.T < 1:
            raise ConfigError(f"algorithm.T={inference.T}: PC-ALM needs a budget of at least 1 state step "
                              "(the paper uses T = 2 x depth)")
        if inference.tol is not None:
            raise ConfigError("algorithm.tol: PC-ALM runs its full budget (dual steps interleave the state steps); "
                              "remove algorithm.tol")
        spec = config.energy
        if not spec.is_term("hidden", "gaussian") or spec.bidirectional:
            raise ConfigError("PC-ALM's hidden terms are the augmented quadratic penalty (rho/2)||r + lambda/rho||^2: "
                              "use energy.hidden=gaussian and energy.lam=0 (the output term may be any energy)")
        if runtime.dtype is not None:
            raise ConfigError("algorithm pcalm runs in float32: remove Runtime(compute_dtype)")
        if not (config.target.holds_output and config.target.free_phase):
            raise ConfigError(f"target {type(config.target).__name__} cannot be combined with parameterisation "
                              "StatesAndDuals (PC-ALM): its energy holds the output at the target (use target Clamp)")
        if not (config.update.relaxes_once and config.update.predictions == "relaxed"):
            raise ConfigError(f"update rule {type(config.update).__name__} cannot be combined with parameterisation "
                              "StatesAndDuals (PC-ALM): its relaxation interleaves dual-ascent steps with the state "
                              "steps and the weights step once at the end (use update rule Equilibrium)")
        if config.eval_steps:
            raise ConfigError("algorithm.eval_steps relaxes the node states at evaluation: it needs parameterisation "
                              "States, not StatesAndDuals (PC-ALM evaluates the feed-forward output)")

    def init(self, model, x: Array, latents0: tuple[Array, ...], goal: Goal) -> tuple[tuple[Array, ...], ...]:
        """v_0 = ((mu_1..mu_{L-1}), (0, ..., 0))."""
        states0 = tuple(latents0[:-1])
        return states0, tuple(jnp.zeros_like(z) for z in states0)

    def free_nodes(self, num_nodes: int, goal: Goal) -> tuple[int, ...]:
        """The states' nodes (the duals are not stepped by the optimiser)."""
        return tuple(range(num_nodes - 1))

    def latents(self, model, x: Array, free, goal: Goal) -> tuple[Array, ...]:
        """z = (z_1..z_{L-1}, held output)."""
        return tuple(free[0]) + (goal.value,)

    def energy(self, model, x: Array, free, goal: Goal, precision: Array | None = None,
               nodes: Sequence[int] | None = None, dtype=None,
               held: Sequence[Array] | None = None) -> tuple[Float[Array, "B"], LayerEnergies]:
        """Per-sample E_rho(z, lambda) (``alm_energy``) toward the held output; ``held``: the
        predictions at these states, already computed (differentiable in the states only)."""
        states, duals = free
        return alm_energy(model, x, goal.value, states, duals, goal.spec, self.rho, _times(precision, goal.weights),
                          nodes, held)

    def weight_energy(self, model, x: Array, free, latents: tuple[Array, ...], goal: Goal, *,
                      precision: Array | None = None, pred=None, nodes=None, dtype=None):
        """E_rho(theta) at the relaxed states and duals (held fixed)."""
        states, duals = jax.lax.stop_gradient(free)
        return alm_energy(model, x, goal.value, states, duals, goal.spec, self.rho, _times(precision, goal.weights),
                          nodes)

    def relax(self, model, x: Array, goal: Goal, problem: Problem, inference: Inference, *, unroll: int | bool = 1,
              schedule: Sequence[ActiveSet] = (), rule: LALRRule | None = None, T: int | None = None):
        """(state step, dual step) x (T - 1), then a final state step; returns ((z, lambda), StepInfo)
        with lambda the duals the final state step used. With ``schedule`` (the error front) the first
        steps evaluate and step only the active part, and their dual steps compute only the residuals
        that can be non-zero (``residual_front``); consecutive steps with the same active set run as
        one scanned body.

        Each dual step forms the predictions mu_l(z) at the new states for its residuals
        r_l = z_l - mu_l; the next state step is taken at those same states, so it reuses them
        (``held_prediction``): its energy and gradient need only the backward pass, and one
        iteration costs one forward and one backward pass instead of two forwards and a backward
        (for blocks whose backward pass needs only their inputs, such as the pre-activation blocks
        act -> linear of the residual MLPs; a post-activation block act(W z + b) recomputes W z + b
        in its backward pass, so it saves less).
        """
        T = inference.T if T is None else T
        L = model.num_nodes
        optimizer = inference.optim.make()
        states0, duals0 = problem.init
        step = dict(T=T, optimizer=optimizer, rule=rule or inference.lalr, free_nodes=problem.free_nodes,
                    num_nodes=L, latent_grad=inference.latent_grad)

        def state_step(z, zstate, lam, held, t, active=None):
            def energy_fn(free, precision, nodes=None):
                return self.energy(model, x, (free, lam), goal, precision, nodes, held=held)

            return latent_step(energy_fn, z, zstate, t, active=active, **step)

        def body(carry, t, active=None):
            z, zstate, lam, held = carry
            z, zstate, info = state_step(z, zstate, lam, held, t, active)
            nodes = None if active is None else residual_front(model, active)
            held = predictions_at(model, x, z, held, nodes)
            lam = tuple(a + self.dual_lr * r for a, r in zip(lam, residuals_from(z, held, nodes)))
            return (z, zstate, lam, held), info

        held0 = predictions_at(model, x, states0)
        carry, chunks = (states0, optimizer.init(states0), duals0, held0), []
        K = min(len(schedule), T - 1)
        for t, end, active in schedule_runs(schedule, K):  # the front's steps: one scanned body per run
            carry, infos = jax.lax.scan(lambda c, s, a=active: body(c, s, a), carry, jnp.arange(t, end),
                                        unroll=unroll)
            chunks.append(infos)
        if K < T - 1:
            carry, infos = jax.lax.scan(body, carry, jnp.arange(K, T - 1), unroll=unroll)
            chunks.append(infos)
        z, zstate, lam, held = carry
        last_active = schedule[T - 1] if len(schedule) >= T else None
        z, _, last = state_step(z, zstate, lam, held, jnp.asarray(T - 1), last_active)
        chunks.append(jax.tree_util.tree_map(lambda a: a[None], last))
        infos = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *chunks)
        return (jax.lax.stop_gradient(z), jax.lax.stop_gradient(lam)), infos

    def metrics(self, free) -> dict[str, Array]:
        """``dual_norm``: the RMS norm of every dual, sqrt(mean_b ||lambda_l||^2)."""
        return {"dual_norm": jnp.stack([error_norm(0.0, a) for a in free[1]])}

    def relaxation(self, model, x: Array, goal: Goal, free, infos: StepInfo) -> ALMRelaxation:
        """The relaxed states, duals and residuals (``ALMRelaxation``)."""
        states, duals = free
        return ALMRelaxation(states, duals, residuals(model, x, states), infos)
