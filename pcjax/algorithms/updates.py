"""Weight-update rules of the PC family: how the relaxed problem becomes a weight step.

A rule sees the problem of the batch (``ctx.problem(model)``: built by the parameterisation from
the target's goal, so the same rule serves states, errors or states and duals as free variables),
relaxes it with ``relax_problem`` and takes the weight gradient with ``problem_gradient``.

* ``Equilibrium``: relax, then (1/beta) dE/dtheta at the relaxed node values (standard PC).
* ``ForwardUpdate``: the same, with the predictions of the weight-gradient energy taken from the
  initial feed-forward values (Qi et al.'s forward update).
* ``Contrastive(inner)``: ``inner``'s update minus the same gradient at the *free* equilibrium
  (output held at its own prediction): (1/beta)[dE/dtheta(nudged) - dE/dtheta(free)], applied when
  top-down terms are on (at lam = 0 the free equilibrium is the feed-forward pass, where it is zero).
* ``Incremental``: a weight step at every inference step (iPC).

A rule returns a ``Step`` that means one thing: either ``state`` is the unchanged ``ctx.state`` and
``grads`` the weight gradient to apply, or ``grads`` is None and ``state`` is the state after the
rule's own weight steps (``ctx.state`` itself when the rule skips the step). A new state together
with gradients is refused (``ConfigError``), not silently overridden.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import ConfigError
from ..inference import StepInfo, latent_step
from ..lalr import Replay
from ..runtime import Runtime
from .targets import Problem, Target, energy_at


class Step(NamedTuple):
    """What an update rule produced on one batch."""

    state: Any       # ctx.state when ``grads`` is set; else the state after the rule's own weight steps
    free: tuple      # relaxed free values
    infos: StepInfo  # per-inference-step trace (leading axis T)
    energy: Any      # batch-mean energy at the relaxed values
    terms: Any       # its LayerEnergies
    grads: Any       # weight gradient to apply, or None


def weight_gradient(model, x, latents, spec, beta, *, pred=None, nodes=None, dtype=None, precision=None):
    """(1/beta) dE/dtheta at node values ``latents`` (E the batch-mean network energy), and E."""

    def loss(m):
        per_sample, terms = energy_at(m, x, latents, spec, precision=precision, pred=pred, nodes=nodes, dtype=dtype)
        return per_sample.mean(), terms

    (energy, terms), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
    return energy, terms, jax.tree_util.tree_map(lambda g: g / beta.astype(g.dtype), grads)


def problem_gradient(model, x, problem: Problem, free, beta, *, precision=None, pred=None, nodes=None, dtype=None):
    """(1/beta) dE/dtheta of ``problem``'s energy at the relaxed free values ``free`` (held fixed), and E.

    E is the batch mean of ``problem.weight_energy`` (the network energy at ``problem.latents(free)``
    with the goal's weights, for a problem without one); ``precision`` multiplies the per-node
    weights, ``pred`` supplies the predictions (the forward update), ``nodes`` restricts the forward
    terms (the error front), ``dtype`` is the compute dtype of the predictions.
    """
    if problem.weight_energy is None:
        if problem.weights is not None:
            precision = problem.weights if precision is None else precision * problem.weights
        return weight_gradient(model, x, problem.latents(free), problem.spec, beta, pred=pred, nodes=nodes,
                               dtype=dtype, precision=precision)

    def loss(m):
        per_sample, terms = problem.weight_energy(m, free, precision=precision, pred=pred, nodes=nodes, dtype=dtype)
        return per_sample.mean(), terms

    (energy, terms), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
    return energy, terms, jax.tree_util.tree_map(lambda g: g / beta.astype(g.dtype), grads)


def relax_problem(algo, problem: Problem, model, *, schedule=(), rule=None):
    """``problem``'s relaxation with ``algo``'s inference part and runtime (``problem.relax``, or
    ``Inference.run`` from ``problem.init`` for a problem without one)."""
    if problem.relax is not None:
        return problem.relax(algo.inference, unroll=algo.runtime.unroll, schedule=schedule, rule=rule)
    return algo.inference.run(problem.energy_fn, problem.init, free_nodes=problem.free_nodes,
                              num_nodes=model.num_nodes, unroll=algo.runtime.unroll, schedule=schedule, rule=rule)


def _relax_and_grad(ctx, pred):
    model = ctx.state.model
    problem = ctx.problem(model)
    schedule, nodes = ctx.front(model, problem)
    free, infos = ctx.relax(problem, model, schedule=schedule)
    energy, terms, grads = ctx.gradient(model, problem, free, pred=pred, nodes=nodes)
    return Step(ctx.state, free, infos, energy, terms, grads)


class UpdateRule(abc.ABC):
    """How the relaxed problem of a batch becomes a weight step: ``step(algo, ctx) -> Step``.

    Capabilities are declared, so that other parts (a parameterisation, a wrapping rule) can ask
    instead of testing the class: ``label`` (the algorithm's name with parameterisation ``States``),
    ``front_ok`` (the error front may skip the zero terms), ``relaxes_once`` (one relaxation, then the
    gradient at its end: what ``Contrastive`` wraps and PC-ALM needs), ``predictions`` (``"relaxed"``:
    the weight gradient's predictions from the relaxed values; ``"feedforward"``: from the initial
    feed-forward pass) and ``steps_during_inference`` (weight steps between inference steps, iPC).
    """

    label: ClassVar[str] = "pc"
    front_ok: ClassVar[bool] = False
    relaxes_once: ClassVar[bool] = False
    predictions: ClassVar[str] = "relaxed"
    steps_during_inference: ClassVar[bool] = False

    def check(self, target: Target, runtime: Runtime) -> None:
        """Refuse (``ConfigError``, naming both) a target or runtime policy this rule cannot run with;
        the default accepts all."""

    def updates_per_step(self, T: int) -> int:
        """Weight updates per training step (1, or T for a rule that steps during inference)."""
        return 1

    @abc.abstractmethod
    def step(self, ctx) -> Step:
        """One batch (``ctx``: a ``pcjax.algorithms.pc.StepContext``): relax ``ctx.problem(model)`` with
        ``ctx.relax`` and return a ``Step`` (see the module docstring for what its ``state`` and
        ``grads`` mean)."""


@dataclass(frozen=True)
class Equilibrium(UpdateRule):
    """(1/beta) dE/dtheta at the relaxed node values."""

    label: ClassVar[str] = "pc"
    front_ok: ClassVar[bool] = True
    relaxes_once: ClassVar[bool] = True

    def step(self, ctx) -> Step:
        return _relax_and_grad(ctx, None)


@dataclass(frozen=True)
class ForwardUpdate(UpdateRule):
    """(1/beta) dE/dtheta at the relaxed values, predictions from the feed-forward values."""

    label: ClassVar[str] = "fu"
    front_ok: ClassVar[bool] = True
    relaxes_once: ClassVar[bool] = True
    predictions: ClassVar[str] = "feedforward"

    def step(self, ctx) -> Step:
        return _relax_and_grad(ctx, ctx.latents0)


@dataclass(frozen=True)
class Contrastive(UpdateRule):
    """``inner``'s gradient minus the gradient at the free equilibrium (top-down weights keep
    their nudged-phase gradient so they still learn to predict the latents). The free phase replays
    the nudged phase's LALR multipliers, so that the difference measures the target, not the step
    sizes. Costs a second relaxation."""

    inner: UpdateRule = field(default_factory=Equilibrium)
    label: ClassVar[str] = "pc"

    def __post_init__(self):
        if not getattr(self.inner, "relaxes_once", False):
            raise ConfigError(f"update rule Contrastive cannot wrap {type(self.inner).__name__}: it needs a rule "
                              "that relaxes once and then steps the weights (Equilibrium or ForwardUpdate)")

    @property
    def front_ok(self) -> bool:  # type: ignore[override]
        return self.inner.front_ok

    def check(self, target: Target, runtime: Runtime) -> None:
        if not target.free_phase:
            raise ConfigError(f"update rule Contrastive cannot be combined with target {type(target).__name__}: "
                              "its free phase holds the output at its own prediction (use target Clamp)")
        if runtime.dtype is not None:
            raise ConfigError("update rule Contrastive runs in float32: remove Runtime(compute_dtype)")

    def step(self, ctx) -> Step:
        out = self.inner.step(ctx)
        if not ctx.energy.bidirectional:  # the free equilibrium is the feed-forward pass: zero gradient
            return out
        model = ctx.state.model
        free_phase = ctx.problem(model, free_output=True)
        rule = Replay(ctx.inference.lalr, out.infos.step_scale)
        free0, _ = ctx.relax(free_phase, model, rule=rule)
        pred = ctx.latents0 if self.inner.predictions == "feedforward" else None
        _, _, g0 = ctx.gradient(model, free_phase, free0, pred=pred)
        if model.backward:
            g0 = eqx.tree_at(lambda m: m.backward, g0, replace_fn=lambda b: jax.tree_util.tree_map(jnp.zeros_like, b))
        return out._replace(grads=jax.tree_util.tree_map(lambda a, b: a - b, out.grads, g0))


@dataclass(frozen=True)
class Incremental(UpdateRule):
    """iPC: at every inference step t, one latent step and one weight step, both along the energy's
    gradients at (z_t, theta_t)."""

    label: ClassVar[str] = "ipc"
    steps_during_inference: ClassVar[bool] = True

    def check(self, target: Target, runtime: Runtime) -> None:
        if not target.holds_output:
            raise ConfigError("update rule Incremental cannot be combined with target SoftNudge: iPC steps the "
                              "weights during relaxation with the output held at its target (use target Clamp)")
        if runtime.dtype is not None:
            raise ConfigError("update rule Incremental runs in float32: remove Runtime(compute_dtype)")

    def updates_per_step(self, T: int) -> int:
        return T

    def step(self, ctx) -> Step:
        inf = ctx.inference
        optimizer = inf.optim.make()
        L = ctx.state.model.num_nodes

        def body(carry, t):
            st, z, zstate = carry
            problem = ctx.problem(st.model)
            precision = inf.lalr.scales(t, jnp.zeros((L,)), inf.T).precision
            _, _, gw = problem_gradient(st.model, ctx.x, problem, z, st.beta, precision=precision)
            z, zstate, info = latent_step(problem.energy_fn, z, zstate, t, T=inf.T, optimizer=optimizer, rule=inf.lalr,
                                          free_nodes=problem.free_nodes, num_nodes=L, latent_grad=inf.latent_grad)
            st = ctx.apply(st, gw, info.step_scale)
            return (st, z, zstate), info

        init = ctx.problem(ctx.state.model).init
        (state, free, _), infos = jax.lax.scan(body, (ctx.state, init, optimizer.init(init)), jnp.arange(inf.T))
        problem = ctx.problem(state.model)
        energy, terms, _ = problem_gradient(state.model, ctx.x, problem, free, state.beta)
        return Step(state, free, infos, energy, terms, None)
