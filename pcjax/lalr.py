"""Layer-adaptive learning rates (LALR): per-node multipliers on the inference step.

A rule maps (inference step t, per-node statistics) to two arrays over the latent nodes 1..L:

* ``step``: rho_l, multiplying the latent gradient of node l before the optimiser
  (z_l <- z_l - eta * rho_l * dE/dz_l for plain SGD);
* ``precision``: pi_l, multiplying the forward energy term of node l at step t.

Rules are small frozen dataclasses; a new rule is one class with ``scales(t, error_norm, T)``
registered with ``register_lalr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .errors import ConfigError


class LayerScales(NamedTuple):
    """Per-node step multipliers rho (L,) and energy precisions pi (L,)."""

    step: Float[Array, "L"]
    precision: Float[Array, "L"]


class LALRRule(Protocol):
    """Protocol of a layer-adaptive rule."""

    def scales(self, t: Array, error_norm: Float[Array, "L"], T: int) -> LayerScales:
        """Multipliers at inference step t given the current per-node error norms ||e_l||."""
        ...


@dataclass(frozen=True)
class Constant:
    """rho_l = value (the same for every node); pi_l = 1. ``value=1`` is plain PC."""

    value: float = 1.0

    def scales(self, t, error_norm, T):
        ones = jnp.ones_like(error_norm)
        return LayerScales(self.value * ones, ones)


@dataclass(frozen=True)
class Replay:
    """rho_l(t) = steps[t, l], a recorded schedule (e.g. another relaxation's multipliers); the
    precision comes from ``rule``."""

    rule: Any
    steps: Any

    def scales(self, t, error_norm, T):
        return LayerScales(self.steps[t].astype(error_norm.dtype), self.rule.scales(t, error_norm, T).precision)


@dataclass(frozen=True)
class Geometric:
    """rho_l = r^(L - l): nodes further from the output take larger (r > 1) or smaller steps."""

    r: float = 1.5

    def scales(self, t, error_norm, T):
        L = error_norm.shape[0]
        depth_from_top = jnp.arange(L, 0, -1) - 1  # L-l for l = 1..L
        return LayerScales(jnp.power(self.r, depth_from_top.astype(error_norm.dtype)), jnp.ones_like(error_norm))


@dataclass(frozen=True)
class ErrorNormalised:
    """rho_l = clip(mean_k ||e_k|| / (||e_l|| + eps), 1/max_scale, max_scale), gradient stopped.

    Recomputed at every inference step from the current errors: layers whose error is small
    relative to the network's mean take larger steps, equalising the speed of relaxation.
    """

    eps: float = 1e-3
    max_scale: float = 10.0

    def scales(self, t, error_norm, T):
        e = jax.lax.stop_gradient(error_norm)
        rho = jnp.mean(e) / (e + self.eps)
        rho = jnp.clip(rho, 1.0 / self.max_scale, self.max_scale)
        return LayerScales(rho, jnp.ones_like(e))


@dataclass(frozen=True)
class PrecisionSchedule:
    """Precision schedule following the error wave (node n counted from the output, n = L - l).

    pi_n(t) = 0 for t < n, and exp(-k (t - n)) / sum_{s=n}^{T-1} exp(-k (s - n)) * norm for t >= n,
    so node n switches on when the error front reaches it and its weight decays exponentially.
    ``norm="sum"`` keeps the weights of a node summing to 1 over the T steps (the published form);
    ``norm="peak"`` rescales them so that each node's first active step has weight 1.
    """

    k: float = 1.0
    norm: str = "peak"

    def scales(self, t, error_norm, T):
        L = error_norm.shape[0]
        n = (jnp.arange(L, 0, -1) - 1).astype(jnp.float32)  # n = L - l
        s = jnp.arange(T, dtype=jnp.float32)
        active = s[None, :] >= n[:, None]
        w = jnp.where(active, jnp.exp(-self.k * (s[None, :] - n[:, None])), 0.0)
        if self.norm == "sum":
            w = w / jnp.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        elif self.norm != "peak":
            raise ConfigError(f"lalr.norm must be 'sum' or 'peak', got {self.norm!r}")
        pi = w[:, jnp.clip(t, 0, T - 1)].astype(error_norm.dtype)
        return LayerScales(jnp.ones_like(error_norm), pi)


@dataclass(frozen=True)
class LogNormalised:
    """Error-normalised without a cap, compensating an exponential decay of the error with depth.

    rho_l = (mean_k ||e_k|| / max(||e_l||, floor * max_k ||e_k||)) ** power, gradient stopped.
    ``ErrorNormalised`` is clipped at ``max_scale`` (10 by default), which cannot counter a node whose
    error is 1e-12 of the mean; here the only bound is the relative ``floor`` (rho_l <= (mean / (floor
    * max)) ** power), so a node the error wave has just reached takes a step of the size the others
    take. ``power`` < 1 compensates part of the decay (in log space: log rho_l is ``power`` times the
    log-ratio). A node with exactly zero error has a zero gradient, so its large rho has no effect.
    """

    floor: float = 1e-8
    power: float = 1.0

    def scales(self, t, error_norm, T):
        e = jax.lax.stop_gradient(error_norm)
        denom = jnp.maximum(e, self.floor * jnp.max(e) + 1e-30)
        rho = jnp.power(jnp.mean(e) / denom, self.power)
        return LayerScales(rho, jnp.ones_like(e))


_RULES: dict[str, type] = {
    "constant": Constant,
    "geometric": Geometric,
    "error_normalised": ErrorNormalised,
    "precision": PrecisionSchedule,
    "log_normalised": LogNormalised,
}


def register_lalr(name: str, cls: type) -> type:
    """Register a new LALR rule class under ``name`` (selectable with ``lalr.rule=name``)."""
    _RULES[name] = cls
    return cls


def available_lalr() -> tuple[str, ...]:
    """Names of the registered LALR rules."""
    return tuple(sorted(_RULES))


def make_lalr(rule: str = "constant", **params) -> LALRRule:
    """Instantiate a rule by name with its parameters (clear error for unknown names/parameters)."""
    try:
        cls = _RULES[rule]
    except KeyError:
        raise ConfigError(f"unknown lalr.rule {rule!r}; valid choices: {', '.join(available_lalr())}") from None
    try:
        return cls(**params)
    except TypeError as err:
        raise ConfigError(f"invalid parameters for lalr.rule={rule}: {err}") from None
