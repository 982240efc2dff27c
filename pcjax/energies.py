"""Energy terms and their registry.

An *energy term* is a function ``phi(pred, value) -> per-sample energy`` of shape ``(B,)``:
the prediction ``pred`` of a node and the node's ``value`` (its latent, or a clamped target)
both carry a leading batch axis. A new term is one function plus one registry entry::

    @register_energy("cauchy")
    def cauchy(pred, value):
        return jnp.sum(jnp.log1p(0.5 * (value - pred) ** 2), axis=tuple(range(1, pred.ndim)))

and is then selectable by name (``energy.hidden=cauchy`` on the command line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .errors import ConfigError
from .registry import register_into

EnergyFn = Callable[[Array, Array], Float[Array, "B"]]

_REGISTRY: dict[str, EnergyFn] = {}


def _sample_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def register_energy(name: str, fn: EnergyFn | None = None, *, overwrite: bool = False):
    """Register ``fn`` under ``name`` (usable as a decorator).

    Raises ``ConfigError`` (a ``ValueError``) if the name is taken by another function and
    ``overwrite`` is false (see :mod:`pcjax.registry`).
    """

    def _register(f: EnergyFn) -> EnergyFn:
        return register_into(_REGISTRY, "energy term", name, f, overwrite=overwrite)

    return _register if fn is None else _register(fn)


def available_energies() -> tuple[str, ...]:
    """Names of all registered energy terms."""
    return tuple(sorted(_REGISTRY))


def get_energy(name_or_fn: str | EnergyFn) -> EnergyFn:
    """Look an energy term up by name (callables pass through unchanged)."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return _REGISTRY[name_or_fn]
    except KeyError:
        raise ConfigError(
            f"unknown energy term {name_or_fn!r}; valid choices: {', '.join(available_energies())}. "
            "Register a new one with pcjax.energies.register_energy(name, fn)."
        ) from None


@register_energy("gaussian")
def gaussian(pred: Array, value: Array) -> Float[Array, "B"]:
    """Gaussian (squared-error) energy: phi = 0.5 * ||value - pred||^2 per sample."""
    return 0.5 * jnp.sum(jnp.square(value - pred), axis=_sample_axes(pred))


register_energy("se", gaussian)


@register_energy("cross_entropy")
def cross_entropy(pred: Array, value: Array) -> Float[Array, "B"]:
    """Cross-entropy output energy: phi = -sum_c value_c * log_softmax(pred)_c per sample.

    ``pred`` are logits, ``value`` a (soft) target distribution over the last axis.
    """
    logp = jax.nn.log_softmax(pred, axis=-1)
    return -jnp.sum(value * logp, axis=_sample_axes(pred))


register_energy("ce", cross_entropy)


def combine_energy(
    forward_terms: Sequence[Float[Array, "B"]],
    backward_terms: Sequence[Float[Array, "B"]],
    alpha: Sequence[float] | Array,
    lam: Sequence[float] | Array,
) -> Float[Array, "B"]:
    """Per-sample bidirectional energy.

    E_b = sum_l alpha_l * F_l[b] + sum_l lambda_l * G_l[b]

    where ``F_l = phi_f(mu_l, z_l)`` are the forward (bottom-up prediction) terms and
    ``G_l = phi_b(nu_l, z_l)`` the top-down terms. With every ``lambda_l = 0`` the backward
    terms are skipped entirely, so the result is *exactly* standard PC energy.
    """
    total = sum(a * f for a, f in zip(alpha, forward_terms, strict=True))
    if len(backward_terms):
        total = total + sum(l * g for l, g in zip(lam, backward_terms, strict=True))
    return total
