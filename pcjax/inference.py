"""Latent relaxation: T optimiser steps on the free latents under ``lax.scan``.

Each step computes g_l = dE/dz_l for the free nodes (E summed over the batch, so every sample's
latents follow the gradient of *its own* energy, independent of the batch size; choose
``latent_grad="mean"`` for the batch-mean convention), scales it per node by the LALR step
multiplier rho_l, and applies one update of an optax optimiser whose state is created fresh for
every batch: z_l <- z_l + optax_update(rho_l * g_l).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from .errors import ConfigError
from .lalr import Constant, LALRRule
from .network import LayerEnergies

# energy_fn(free_latents, precision) -> (per-sample energy (B,), LayerEnergies)
EnergyFn = Callable[[tuple[Array, ...], Array], tuple[Array, LayerEnergies]]


@dataclass(frozen=True)
class LatentOptim:
    """The latent optimiser: ``sgd`` (with optional momentum/nesterov) or ``adam``, learning rate ``lr``."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False

    def make(self) -> optax.GradientTransformation:
        """The optax transformation (its state is re-initialised for every batch)."""
        if self.name == "sgd":
            return optax.sgd(self.lr, momentum=self.momentum or None, nesterov=self.nesterov)
        if self.name == "adam":
            return optax.adam(self.lr)
        raise ConfigError(f"unknown latent optimiser {self.name!r}; valid choices: sgd, adam")


class StepInfo(NamedTuple):
    """What one inference step saw: per-node mean forward energies, total energy, step scales."""

    layer_energy: Float[Array, "L"]
    energy: Float[Array, ""]
    step_scale: Float[Array, "L"]


def mean_layer_energy(terms: LayerEnergies) -> Float[Array, "L"]:
    """Batch-mean forward energy of every node (the per-layer energies that are logged)."""
    return jnp.stack([f.mean() for f in terms.forward])


def latent_step(
    energy_fn: EnergyFn,
    free: tuple[Array, ...],
    opt_state: optax.OptState,
    t: Array,
    *,
    T: int,
    optimizer: optax.GradientTransformation,
    rule: LALRRule,
    free_nodes: Sequence[int],
    num_nodes: int,
    latent_grad: str = "sample",
) -> tuple[tuple[Array, ...], optax.OptState, StepInfo]:
    """One inference step: z <- z + update(rho * dE/dz) on the free latents."""
    dummy_norm = jnp.zeros((num_nodes,), jnp.float32)
    precision = rule.scales(t, dummy_norm, T).precision

    def objective(z):
        per_sample, terms = energy_fn(z, precision)
        total = per_sample.sum() if latent_grad == "sample" else per_sample.mean()
        return total, (per_sample.mean(), terms)

    (_, (energy, terms)), grads = jax.value_and_grad(objective, has_aux=True)(free)
    rho = rule.scales(t, terms.error_norm, T).step
    grads = tuple(rho[n].astype(g.dtype) * g for n, g in zip(free_nodes, grads))
    updates, opt_state = optimizer.update(grads, opt_state, free)
    free = optax.apply_updates(free, updates)
    return free, opt_state, StepInfo(mean_layer_energy(terms), energy, rho)


def relax(
    energy_fn: EnergyFn,
    free: tuple[Array, ...],
    *,
    T: int,
    optim: LatentOptim,
    rule: LALRRule | None = None,
    free_nodes: Sequence[int],
    num_nodes: int,
    latent_grad: str = "sample",
    unroll: int | bool = 1,
) -> tuple[tuple[Array, ...], StepInfo]:
    """Run T inference steps with ``lax.scan`` (compile time flat in T).

    Returns the relaxed free latents and the stacked ``StepInfo`` of every step (leading axis T).
    """
    if latent_grad not in ("sample", "mean"):
        raise ConfigError(f"latent_grad must be 'sample' or 'mean', got {latent_grad!r}")
    rule = rule or Constant()
    optimizer = optim.make()
    if T == 0:
        L = num_nodes
        empty = StepInfo(jnp.zeros((0, L)), jnp.zeros((0,)), jnp.zeros((0, L)))
        return free, empty

    def body(carry, t):
        z, state = carry
        z, state, info = latent_step(
            energy_fn, z, state, t, T=T, optimizer=optimizer, rule=rule,
            free_nodes=free_nodes, num_nodes=num_nodes, latent_grad=latent_grad,
        )
        return (z, state), info

    (free, _), infos = jax.lax.scan(body, (free, optimizer.init(free)), jnp.arange(T), unroll=unroll)
    return free, infos
