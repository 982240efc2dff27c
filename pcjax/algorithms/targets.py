"""Targets: how the label enters a PC-family relaxation.

A target turns the label into a ``Goal`` on a batch: the value the output node is held at (or none:
the output is free), per-node weights of the energy's forward terms, the energy's terms, and a cost
of a free output. The parameterisation (``pcjax.algorithms.parameterisation``) then builds the
*problem* that inference solves from it: which variables are free, their initial values, the energy
of the free values, and the node values the weight update sees.

* ``Clamp``: the output is held at z_L = mu_L - beta (mu_L - y) (beta = 1: clamped to y), every
  term of weight 1: E = sum_l alpha_l phi_l(mu_l, z_l) (state PC; ePC's ``target="nudged"``).
* ``Weighted``: the output is held at y and its term weighted by beta:
  E = sum_{l<L} alpha_l phi_hidden(mu_l, z_l) + beta alpha_L phi_out(mu_L, y) (ePC's default, ``target="weighted"``).
* ``SoftNudge``: the output is free; F = E + beta C(z_L, y), with C the output energy term and the
  output's own prediction term Gaussian (equilibrium propagation's nudge).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ConfigError
from ..network_energy import EnergySpec, network_energy, partial_energy
from ..runtime import Runtime, cast_floats


def energy_at(model, x: Array, latents, spec: EnergySpec, *, precision=None, pred=None, nodes=None, dtype=None):
    """The network energy at ``latents``, predictions from ``pred`` (default: the latents); only the
    forward terms of ``nodes`` (the error front) when given; predictions in ``dtype`` when given
    (weights and node values cast, errors and energies in the latents' dtype)."""
    if dtype is None and nodes is None:
        return network_energy(model, x, latents, spec, precision=precision, pred_latents=pred)
    model, x = cast_floats(model, dtype), cast_floats(x, dtype)
    pred = cast_floats(latents if pred is None else pred, dtype) if dtype is not None else pred
    if nodes is not None:
        return partial_energy(model, x, latents, spec, nodes, precision=precision, pred_latents=pred)
    return network_energy(model, x, latents, spec, precision=precision, pred_latents=pred)


def nudged_target(mu_out: Array, y: Array, beta: Array | float, spec: EnergySpec) -> Array:
    """Output node value under nudging: z_L = mu_L - beta * (mu_L - y).

    beta = 1 clamps the output to the target y. For a cross-entropy output the interpolation is done
    between softmax(mu_L) and y so that z_L stays a distribution.
    """
    mu_out = jax.lax.stop_gradient(mu_out)
    if spec.is_term("output", "cross_entropy"):
        mu_out = jax.nn.softmax(mu_out, axis=-1)
    beta = jnp.asarray(beta, mu_out.dtype)
    return jnp.where(beta == 1.0, y.astype(mu_out.dtype), mu_out - beta * (mu_out - y))


class Goal(NamedTuple):
    """How the label enters the energy on one batch (what a target produces).

    ``value``: the value z_L the output node is held at, or None when the output is free.
    ``weights``: per-node weights w (shape (L,)) that multiply the forward terms' weights in the
    relaxation's and the weight update's energy, or None (all 1).
    ``spec``: the energy's terms. ``cost``: for a free output, the extra per-sample cost c(z_L)
    added to the relaxation's energy (not to the weight update's: it has no weights), else None.
    """

    value: Array | None
    weights: Array | None
    spec: EnergySpec
    cost: Callable[[Array], Array] | None = None

    @property
    def clamped(self) -> bool:
        """Whether the output node is held fixed (the error front and the contrastive rule need it)."""
        return self.value is not None


class Problem(NamedTuple):
    """What inference solves on one batch (built by a parameterisation from a ``Goal``).

    ``energy_fn(free, precision[, nodes])``: per-sample energy of the free values and its terms
    (``nodes``: only those forward terms, the error front). ``latents(free)``: the node values
    z_1..z_L the weight update sees. ``weights``: the goal's per-node weights (None: all 1).
    ``relax(inference, *, unroll, schedule, rule, T)``: the relaxation, (free values, StepInfo)
    (None: ``inference.run`` on ``energy_fn`` from ``init``). ``weight_energy(model, free, *,
    precision, pred, nodes, dtype)``: the energy as a function of the weights at fixed relaxed free
    values, what the weight update differentiates (None: the network energy at ``latents(free)``).
    """

    init: Any                        # initial free values
    free_nodes: tuple[int, ...]      # the node (0-based: node l is l - 1) whose LALR multiplier scales each free leaf
    energy_fn: Callable              # energy_fn(free, precision[, nodes]) -> (per-sample E, LayerEnergies)
    latents: Callable                # latents(free) -> (z_1..z_L), the values the weight update sees
    spec: EnergySpec                 # the energy of the weight update
    clamped: bool                    # output held fixed (the error front and contrast need it)
    weights: Array | None = None
    relax: Callable | None = None
    weight_energy: Callable | None = None


class Target(abc.ABC):
    """How the label enters the energy: ``goal`` turns (mu, y, beta) into a ``Goal`` on a batch.

    Capabilities are declared, so that other parts can ask instead of testing the class:
    ``holds_output`` (the output node is held at a value, not free), ``free_phase`` (``goal(...,
    free_output=True)`` gives the zero-nudge free phase that ``Contrastive`` subtracts) and
    ``weights_terms`` (the goal carries per-node weights of the forward terms, e.g. beta on the output).
    """

    holds_output: ClassVar[bool] = True
    free_phase: ClassVar[bool] = False
    weights_terms: ClassVar[bool] = False

    def check(self, runtime: Runtime) -> None:
        """Refuse (``ConfigError``) a runtime policy this target cannot run under; the default accepts all."""

    @abc.abstractmethod
    def goal(self, latents0: tuple[Array, ...], y: Array, beta: Array, spec: EnergySpec, *,
             free_output: bool = False) -> Goal:
        """The ``Goal`` of a batch from its feed-forward values ``latents0``, labels ``y`` and ``beta``."""


@dataclass(frozen=True)
class Clamp(Target):
    """Output held at z_L = mu_L - beta (mu_L - y); every term of weight 1."""

    free_phase: ClassVar[bool] = True

    def goal(self, latents0: tuple[Array, ...], y: Array, beta: Array, spec: EnergySpec, *,
             free_output: bool = False) -> Goal:
        """z_L = mu_L - beta (mu_L - y) (``free_output``: the zero-nudge free phase, z_L = mu_L)."""
        value = nudged_target(latents0[-1], y.astype(latents0[-1].dtype), 0.0 if free_output else beta, spec)
        return Goal(value, None, spec)


@dataclass(frozen=True)
class Weighted(Target):
    """Output held at y, its term weighted by beta: w_L = beta (ePC's default target)."""

    weights_terms: ClassVar[bool] = True

    def goal(self, latents0: tuple[Array, ...], y: Array, beta: Array, spec: EnergySpec, *,
             free_output: bool = False) -> Goal:
        """z_L = y with w = (1, ..., 1, beta); ``free_output`` (a zero nudge) has no meaning here."""
        if free_output:
            raise ConfigError("target Weighted has no free phase (a zero nudge would weigh the output term by 0): "
                              "use target Clamp")
        dtype = latents0[-1].dtype
        weights = jnp.ones((len(latents0),), dtype).at[-1].set(jnp.asarray(beta).astype(dtype))
        return Goal(y.astype(dtype), weights, spec)


@dataclass(frozen=True)
class SoftNudge(Target):
    """Every node free; F = E + beta C(z_L, y) with the output's prediction term Gaussian."""

    holds_output: ClassVar[bool] = False

    def check(self, runtime: Runtime) -> None:
        if runtime.dtype is not None:
            raise ConfigError("target SoftNudge (algorithm.nudge=soft) runs in float32: "
                              "Runtime(compute_dtype) needs target Clamp")

    def goal(self, latents0: tuple[Array, ...], y: Array, beta: Array, spec: EnergySpec, *,
             free_output: bool = False) -> Goal:
        """Output free, spec with a Gaussian output term, cost c(z_L) = beta C(z_L, y)."""
        if free_output:
            raise ConfigError("target SoftNudge has no zero-nudge free phase here: use target Clamp")
        cost = spec.term("output")
        return Goal(None, None, spec.replace(output="gaussian"), lambda z_out: beta * cost(z_out, y))
