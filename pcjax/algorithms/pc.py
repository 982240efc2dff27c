"""The PC family's training step, assembled from parts.

One step (DESIGN 1): (1) mu_l, the feed-forward pass; (2) the target part places the label in a
``Goal`` (``Clamp``: z_L := mu_L - beta (mu_L - y); ``Weighted``: z_L := y with its term weighted by
beta; ``SoftNudge``: the output free, F = E + beta C); (3) the parameterisation frees the variables
of inference and builds the problem (``States``: z_l from mu_l; ``Errors``: e_l from 0, z by a
forward sweep; ``StatesAndDuals``: z_l and duals lambda_l, PC-ALM); (4) the update rule relaxes it
(the inference part: T optimiser steps, each node's step scaled by the LALR rule) and turns it into
a weight step (``Equilibrium``: (1/beta) dE/dtheta; ``ForwardUpdate``; ``Contrastive``;
``Incremental``). ``PC`` runs every combination the parts accept; ``EPC`` and ``PCALM`` are ``PC``
with their parts. The runtime policy (error front, unrolling, compute dtype) changes how the step
is computed, not what.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..error_front import coarsen_schedule, error_front_schedule, error_front_terms
from ..errors import ConfigError
from ..inference import Inference, LatentOptim, mean_layer_energy
from ..lalr import Constant, LALRRule
from ..network_energy import EnergySpec, network_energy
from ..runtime import Runtime, cast_floats
from .base import Algorithm, TrainState, accuracy, check_batch
from .parameterisation import Parameterisation, States
from .targets import Clamp, Goal, Problem, Target
from .updates import Equilibrium, UpdateRule, problem_gradient, relax_problem


@dataclass(frozen=True)
class PCConfig:
    """Hyper-parameters and parts of PC-family training: the target (how the label enters), the
    parameterisation (what inference frees), the update rule and the inference settings."""

    T: int = 8
    latent: LatentOptim = field(default_factory=LatentOptim)
    energy: EnergySpec = field(default_factory=EnergySpec)
    lalr: LALRRule = field(default_factory=Constant)
    lalr_weights: bool = False
    beta: float = 1.0
    latent_grad: str = "sample"
    eval_steps: int = 0
    target: Target = field(default_factory=Clamp)
    update: UpdateRule = field(default_factory=Equilibrium)
    tol: float | None = None
    tol_on: str = "energy"
    min_steps: int = 0
    parameterisation: Parameterisation = field(default_factory=States)

    def __post_init__(self):
        for part, base in (("target", Target), ("update", UpdateRule), ("parameterisation", Parameterisation)):
            if not isinstance(getattr(self, part), base):
                raise ConfigError(f"PCConfig.{part}={getattr(self, part)!r} is not a {base.__name__}: subclass "
                                  f"pcjax.{base.__name__} (its docstring lists what a {part} declares and implements)")
        if self.beta == 0:
            raise ConfigError("algorithm.beta must be non-zero (the weight update is scaled by 1/beta)")
        if self.target.weights_terms and not self.beta > 0:
            raise ConfigError(f"algorithm.beta must be > 0 with target Weighted (the output term's weight), "
                              f"got {self.beta}")
        if self.eval_steps < 0:
            raise ConfigError(f"algorithm.eval_steps must be >= 0, got {self.eval_steps}")

    @property
    def inference(self) -> Inference:
        """The inference part."""
        return Inference(self.T, self.latent, self.lalr, self.latent_grad, tol=self.tol, tol_on=self.tol_on,
                         min_steps=self.min_steps)


#: From this many error-front steps on, the steps run in chunks that share an active set (see
#: ``coarsen_schedule``): the same result, compiled as ~sqrt(steps) loop bodies instead of one per step.
COARSEN_FROM = 16


def default_name(config: PCConfig) -> str:
    """The run's algorithm name: the update rule's label, prefixed by the parameterisation's unless
    that frees the states."""
    label, free = config.update.label, config.parameterisation.label
    if free == States.label:
        return label
    return free if label == "pc" else f"{free}-{label}"


class StepContext(NamedTuple):
    """One batch as an update rule sees it: the data, the feed-forward values, the batch's problem and
    the algorithm's parts with its runtime policy already bound in, so that a rule never needs the
    algorithm itself.

    ``problem(model, free_output=False)``: the batch's ``Problem`` under the weights of ``model``;
    ``front(model, problem)``: the error front's (schedule, weight-update nodes), ((), None) where it
    does not apply; ``relax(problem, model, *, schedule=(), rule=None)``: the relaxation with the
    inference part, (free values, per-step trace); ``gradient(model, problem, free, *, pred=None,
    nodes=None, precision=None)``: (1/beta) dE/dtheta at the relaxed free values in the runtime's compute
    dtype, (E, terms, grads); ``apply(state, grads, step_scale)``: one weight-optimiser step with the
    layer-wise weight scaling of the step's LALR multipliers.
    """

    state: TrainState
    x: Array
    y: Array
    latents0: tuple          # feed-forward values (gradient stopped)
    target: Any
    problem: Callable
    inference: Inference
    energy: EnergySpec
    front: Callable
    relax: Callable
    gradient: Callable
    apply: Callable


#: the former name of ``StepContext``
Context = StepContext


def feedforward(model, x, dtype=None) -> tuple[Array, ...]:
    """mu_1..mu_L of the feed-forward pass, computed in ``dtype`` when given (returned in x's dtype)."""
    if dtype is None:
        return model.feedforward(x)
    return tuple(m.astype(x.dtype) for m in cast_floats(model, dtype).feedforward(cast_floats(x, dtype)))


def _run_rule(rule: UpdateRule, algo, ctx: StepContext):
    """``rule.step(ctx)``; a rule written against the earlier contract, ``step(algo, ctx)``, still runs
    (with a ``DeprecationWarning``: everything it read from ``algo`` is on ``ctx`` now)."""
    if len(inspect.signature(rule.step).parameters) >= 2:
        warnings.warn(f"update rule {type(rule).__name__}.step(algo, ctx): the step now receives only the context, "
                      "step(ctx) (ctx.inference, ctx.energy, ctx.front, ctx.relax, ctx.gradient, ctx.apply replace "
                      "what the rule read from the algorithm)", DeprecationWarning, stacklevel=2)
        return rule.step(algo, ctx)
    return rule.step(ctx)


class PC(Algorithm):
    """The PC family's algorithm: predictive coding (standard; bidirectional when ``energy.lam > 0``;
    iPC, forward update, contrastive and soft-nudged by their parts), ePC and PC-ALM by their
    parameterisations (``config.parameterisation``).

    ``inference`` replaces the inference part that ``config`` describes (``EPC`` and ``PCALM`` take one).
    """

    def __init__(self, config: PCConfig, weight_optim, total_steps: int, *, runtime: Runtime | None = None,
                 name: str | None = None, inference: Inference | None = None):
        super().__init__(weight_optim, total_steps, runtime=runtime, name=name or default_name(config))
        config.update.check(config.target, self.runtime)
        config.target.check(self.runtime)
        self.config, self.inference = config, config.inference if inference is None else inference
        config.parameterisation.check(config, self.inference, self.runtime)

    @property
    def parameterisation(self) -> Parameterisation:
        """What inference frees (``config.parameterisation``)."""
        return self.config.parameterisation

    @property
    def updates_per_step(self) -> int:
        return self.config.update.updates_per_step(self.inference.T)

    def init(self, model, beta: float | None = None) -> TrainState:
        return super().init(model, self.config.beta if beta is None else beta)

    def goal(self, latents0: tuple[Array, ...], y: Array, beta: Array, *, free_output: bool = False) -> Goal:
        """The target part's goal for the batch (``free_output``: the zero-nudge free phase)."""
        return self.config.target.goal(latents0, y, beta, self.config.energy, free_output=free_output)

    def problem(self, model, x: Array, y: Array, latents0: tuple[Array, ...], beta: Array, *,
                free_output: bool = False) -> Problem:
        """The problem inference solves on the batch under the weights of ``model``: the
        parameterisation applied to the target's goal."""
        goal = self.goal(latents0, y, beta, free_output=free_output)
        return self.config.parameterisation.problem(model, x, goal, latents0, self.runtime)

    def front(self, model, problem):
        """The error front's (schedule, weight-update terms) where it applies, else ((), None). Not with
        ``guarded_sgd``, whose backtracking compares whole energies from step to step (the front's
        steps evaluate only the active terms)."""
        spec, T = self.config.energy, self.inference.T
        if not (self.runtime.error_front and self.config.update.front_ok and self.config.parameterisation.front_ok
                and problem.clamped and not spec.bidirectional and spec.is_term("hidden", "gaussian")
                and not self.inference.optim.compares_energies):
            return (), None
        schedule = error_front_schedule(model.num_nodes, model.skip_edges, T)
        if len(schedule) >= COARSEN_FROM:  # deep nets: sqrt(depth) scanned chunks instead of one body per step
            schedule = coarsen_schedule(schedule)
        return (schedule,
                error_front_terms(model.num_nodes, model.skip_edges, T))

    def weight_scaler(self, rho: Array):
        """With ``lalr_weights``: scales block l's update by rho_l."""
        if not self.config.lalr_weights:
            return None

        def scale(updates):
            for i in range(len(updates.blocks)):
                updates = eqx.tree_at(lambda u, i=i: u.blocks[i], updates,
                                      replace_fn=lambda b, i=i: jax.tree_util.tree_map(lambda a: a * rho[i].astype(a.dtype), b))
            return updates

        return scale

    def step_context(self, state: TrainState, x: Array, y: Array, latents0: tuple, problem: Callable) -> StepContext:
        """The update rule's view of one batch, with this algorithm's parts and runtime policy bound in."""
        def relax(prob: Problem, model, *, schedule=(), rule=None):
            return relax_problem(self, prob, model, schedule=schedule, rule=rule)

        def gradient(model, prob: Problem, free, *, pred=None, nodes=None, precision=None):
            return problem_gradient(model, x, prob, free, state.beta, pred=pred, nodes=nodes, precision=precision,
                                    dtype=self.runtime.dtype)

        def apply(st: TrainState, grads, step_scale: Array) -> TrainState:
            return self.apply_updates(st, grads, self.weight_scaler(step_scale))

        return StepContext(state, x, y, latents0, self.config.target, problem, self.inference, self.config.energy,
                           self.front, relax, gradient, apply)

    def train_step(self, state: TrainState, x: Array, y: Array, *, return_relaxation: bool = False):
        """One training step on a batch (x, one-hot y); returns the new state and metrics (and, with
        ``return_relaxation``, what inference produced: the parameterisation's ``relaxation``)."""
        cfg, model = self.config, state.model
        check_batch(model, x, y)
        L = model.num_nodes
        latents0 = tuple(jax.lax.stop_gradient(m) for m in feedforward(model, x, self.runtime.dtype))
        loss = cfg.energy.term("output")(latents0[-1], y).mean()

        def problem(m, free_output: bool = False) -> Problem:
            return self.problem(m, x, y, latents0, state.beta, free_output=free_output)

        out = _run_rule(cfg.update, self, self.step_context(state, x, y, latents0, problem))
        rho = out.infos.step_scale[-1] if self.inference.T > 0 else jnp.ones((L,))
        if out.grads is not None and out.state is not state:
            raise ConfigError(f"update rule {type(cfg.update).__name__} returned a new training state *and* weight "
                              "gradients: a Step means one thing. Return the unchanged ctx.state with the gradients to "
                              "apply, or the state the rule stepped itself with grads=None (a rule that skips the "
                              "weight step returns ctx.state with grads=None)")
        new = out.state if out.grads is None else self.apply_updates(state, out.grads, self.weight_scaler(rho))
        trace = jnp.concatenate([out.infos.layer_energy, mean_layer_energy(out.terms)[None]], axis=0)
        metrics = {"loss": loss, "energy": out.energy, "acc": accuracy(latents0[-1], y), "layer_energy": trace,
                   "error_norm": out.terms.error_norm, "step_scale": rho, **cfg.parameterisation.metrics(out.free)}
        if not return_relaxation:
            return new, metrics
        relaxed = cfg.parameterisation.relaxation(model, x, self.goal(latents0, y, state.beta), out.free, out.infos)
        return new, metrics, relaxed

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Output readout: feed-forward mu_L, or z_L after ``eval_steps`` free inference steps (every
        node free, the output's energy Gaussian; differs from mu_L only when top-down terms pull)."""
        cfg, model = self.config, state.model
        mus = model.feedforward(x)
        if cfg.eval_steps == 0:
            return mus[-1]
        spec = cfg.energy.replace(output="gaussian")
        L = model.num_nodes
        free, _ = self.inference.run(lambda free, precision: network_energy(model, x, free, spec),
                                     tuple(jax.lax.stop_gradient(m) for m in mus), free_nodes=tuple(range(L)),
                                     num_nodes=L, rule=Constant(), T=cfg.eval_steps)
        return free[-1]
