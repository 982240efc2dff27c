"""Targets: how the label enters a state-PC relaxation.

A target builds the *problem* that inference solves on a batch: which nodes are free, their initial
values, the energy of the free values, and the full node values that the weight update sees.

* ``Clamp``: the output is held at z_L = mu_L - beta (mu_L - y) (beta = 1: clamped to y); the free
  nodes are z_1..z_{L-1}; E = the network energy at (z_1..z_{L-1}, z_L).
* ``SoftNudge``: every node is free, the output included; F = E + beta C(z_L, y), with C the output
  energy term and the output's own prediction term Gaussian (equilibrium propagation's nudge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from jaxtyping import Array

import jax
import jax.numpy as jnp

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


class Problem(NamedTuple):
    """What inference solves on one batch."""

    init: tuple[Array, ...]          # initial free values
    free_nodes: tuple[int, ...]      # their node positions (0-based: node l is l - 1)
    energy_fn: Callable              # energy_fn(free, precision[, nodes]) -> (per-sample E, LayerEnergies)
    latents: Callable                # latents(free) -> (z_1..z_L), the values the weight update sees
    spec: EnergySpec                 # the energy of the weight update
    clamped: bool                    # output held fixed (the error front and contrast need it)


@dataclass(frozen=True)
class Clamp:
    """Output held at z_L = mu_L - beta (mu_L - y); z_1..z_{L-1} free."""

    def check(self, runtime: Runtime) -> None:
        """Every runtime policy applies."""

    def problem(self, model, x, y, latents0, beta, spec: EnergySpec, runtime: Runtime, *, free_output=False) -> Problem:
        """The clamped problem (``free_output``: the zero-nudge free phase, z_L = mu_L)."""
        target = nudged_target(latents0[-1], y.astype(latents0[-1].dtype), 0.0 if free_output else beta, spec)
        dtype = runtime.dtype

        def energy_fn(free, precision, nodes=None):
            return energy_at(model, x, free + (target,), spec, precision=precision, nodes=nodes, dtype=dtype)

        return Problem(latents0[:-1], tuple(range(model.num_nodes - 1)), energy_fn, lambda free: tuple(free) + (target,),
                       spec, True)


@dataclass(frozen=True)
class SoftNudge:
    """Every node free; F = E + beta C(z_L, y) with the output's prediction term Gaussian."""

    def check(self, runtime: Runtime) -> None:
        if runtime.dtype is not None:
            raise ConfigError("target SoftNudge (algorithm.nudge=soft) runs in float32: "
                              "Runtime(compute_dtype) needs target Clamp")

    def problem(self, model, x, y, latents0, beta, spec: EnergySpec, runtime: Runtime) -> Problem:
        cost = spec.term("output")
        soft = spec.replace(output="gaussian")

        def energy_fn(free, precision):
            per_sample, terms = network_energy(model, x, free, soft, precision=precision)
            return per_sample + beta * cost(free[-1], y), terms

        return Problem(latents0, tuple(range(model.num_nodes)), energy_fn, tuple, soft, False)
