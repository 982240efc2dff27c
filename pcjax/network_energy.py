"""The energy of a network at given node values, per node and in total.

Forward prediction errors F_l = phi_f(mu_l, z_l) for every node l = 1..L, top-down terms
G_l = phi_b(nu_l, z_l) for the nodes with a top-down predictor, and the per-sample total

    E_b = sum_{l=1..L} w_l alpha_l F_l[b] + sum_{l in backward_nodes} lambda_l G_l[b]

with ``w`` an optional per-node weight (an algorithm's precision schedule, or ePC's output weight
beta). The network supplies the predictions (``Network.predict``/``top_down``); what an algorithm
does with the energy (which nodes are free, where predictions come from) is the algorithm's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from .energies import EnergyFn, get_energy
from .errors import ConfigError, ShapeError

Latents = tuple[Array, ...]


@dataclass(frozen=True)
class EnergySpec:
    """Which energy terms the network uses and how they are weighted.

    ``hidden``/``output``: phi_f for hidden nodes / the output node; ``backward``: phi_b.
    ``alpha``: forward weights (scalar or one per node 1..L); ``lam``: top-down weights (scalar or
    one per backward node). ``lam == 0`` skips the top-down terms entirely (exactly standard PC).
    ``params``: keyword parameters of the energy terms (``{"scale": 2.0}`` for a Cauchy scale);
    each term receives the ones its signature accepts, and a parameter no term accepts is an error.
    """

    hidden: str | EnergyFn = "gaussian"
    output: str | EnergyFn = "gaussian"
    backward: str | EnergyFn = "gaussian"
    alpha: float | tuple[float, ...] = 1.0
    lam: float | tuple[float, ...] = 0.0
    params: Any = ()

    def __post_init__(self):
        params = dict(self.params or {})
        object.__setattr__(self, "params", tuple(sorted(params.items())))
        for name, value in (("energy.alpha", self.alpha), ("energy.lam", self.lam)):
            values = value if isinstance(value, (tuple, list)) else (value,)
            if any(float(v) < 0 for v in values):
                raise ConfigError(f"{name}={value} has a negative weight: an energy weighted below zero is unbounded "
                                  "below; use weights >= 0 (lam = 0 is standard PC)")
        if params:
            accepted = set().union(*(_keywords(get_energy(t)) for t in (self.hidden, self.output, self.backward)))
            unknown = sorted(set(params) - accepted)
            if unknown:
                raise ConfigError(f"energy.params {unknown} are not parameters of the energy terms "
                                  f"{self.hidden!r}/{self.output!r}/{self.backward!r} (they accept: "
                                  f"{', '.join(sorted(accepted)) or 'none'})")
            self._check_numbers(params)

    def _check_numbers(self, params: dict) -> None:
        """A parameter whose default is a number must be given a number (a string reached the term's
        maths as a raw TypeError at trace time)."""
        for key, value in sorted(params.items()):
            if not (value is None or isinstance(value, (str, bytes, bool, dict))):
                continue
            for which in ("hidden", "output", "backward"):
                name = getattr(self, which)
                try:
                    default = inspect.signature(get_energy(name)).parameters[key].default
                except (KeyError, TypeError, ValueError):
                    continue
                if isinstance(default, (int, float)) and not isinstance(default, bool):
                    shown = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
                    raise ConfigError(f"energy.params.{key}={value!r} must be a number: it is the parameter {key!r} "
                                      f"of the energy term {shown!r} (energy.{which}), default {default!r}. Set it "
                                      f"to a number, e.g. +energy.params.{key}={default!r} on the command line")

    @property
    def bidirectional(self) -> bool:
        lam = self.lam if isinstance(self.lam, tuple) else (self.lam,)
        return any(float(v) != 0.0 for v in lam)

    def term(self, which: str) -> EnergyFn:
        """The energy term ``hidden``/``output``/``backward`` with the parameters it accepts bound."""
        fn = get_energy(getattr(self, which))
        own = {k: v for k, v in self.params if k in _keywords(fn)}
        if not own:
            return fn
        return lambda pred, value: fn(pred, value, **own)

    def is_term(self, which: str, name: str) -> bool:
        """Whether term ``which`` is the registered energy ``name`` (without parameters)."""
        return get_energy(getattr(self, which)) is get_energy(name) and not any(
            k in _keywords(get_energy(name)) for k, _ in self.params)

    def replace(self, **changes) -> EnergySpec:
        """A copy with ``changes`` applied."""
        fields = dict(hidden=self.hidden, output=self.output, backward=self.backward, alpha=self.alpha, lam=self.lam,
                      params=dict(self.params))
        return EnergySpec(**{**fields, **changes})


def _keywords(fn: Callable) -> set[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set()
    return {n for n, p in list(sig.parameters.items())[2:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class LayerEnergies(NamedTuple):
    """Per-node, per-sample energy terms and error norms."""

    forward: tuple[Float[Array, "B"], ...]   # F_l = phi_f(mu_l, z_l), l = 1..L
    backward: tuple[Float[Array, "B"], ...]  # G_l = phi_b(nu_l, z_l), l in backward_nodes
    error_norm: Float[Array, "L"]            # sqrt(mean_b ||z_l - mu_l||^2)


def broadcast(value: float | Sequence[float], n: int, name: str) -> tuple[float, ...]:
    """``value`` as n per-node weights (a scalar is repeated; a sequence must have n entries)."""
    if isinstance(value, (int, float)):
        return (float(value),) * n
    value = tuple(float(v) for v in value)
    if len(value) != n:
        raise ConfigError(f"{name} has {len(value)} entries but the network needs {n}")
    return value


def error_norm(mu: Array, z: Array) -> Float[Array, ""]:
    """||e|| = sqrt(mean_b ||z_b - mu_b||^2), the batch's RMS prediction-error norm of one node."""
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(z - mu).reshape(z.shape[0], -1), axis=1)))


def layer_energies(model, x: Array, latents: Latents, spec: EnergySpec, *,
                   pred_latents: Latents | None = None, mus: Latents | None = None) -> LayerEnergies:
    """Per-node energy terms F_l = phi_f(mu_l, z_l) (phi_f = ``spec.output`` for l = L) and, if
    ``spec.lam != 0``, G_l = phi_b(nu_l, z_l). Predictions come from ``pred_latents`` when given
    (forward-update rule: predictions from the initial feed-forward values), else from ``latents``;
    ``mus`` supplies the forward predictions mu_1..mu_L themselves (already computed, e.g. by ePC's
    sweep; they are not recomputed)."""
    if len(latents) != model.num_nodes:
        raise ShapeError(f"expected {model.num_nodes} latents (z_1..z_L) but got {len(latents)}")
    values = (x,) + tuple(latents)
    pvalues = values if pred_latents is None else (x,) + tuple(pred_latents)
    if mus is None:
        mus = model.predictions(pvalues)
    elif len(mus) != model.num_nodes:
        raise ShapeError(f"expected {model.num_nodes} predictions (mu_1..mu_L) but got {len(mus)}")
    hidden, output = spec.term("hidden"), spec.term("output")
    forward = []
    for l, (mu, z) in enumerate(zip(mus, latents), start=1):
        which = "output" if l == model.num_nodes else "hidden"
        phi = output if which == "output" else hidden
        forward.append(_checked(phi(mu, z), z, l, _term_name(spec, which)))
    norms = jnp.stack([error_norm(mu, z) for mu, z in zip(mus, latents)])
    backward: tuple[Array, ...] = ()
    if spec.bidirectional:
        if not model.backward_nodes:
            raise ConfigError("energy.lam > 0 needs top-down predictors: build the model with "
                              "model.backward=learned (or tied)")
        phi_b = spec.term("backward")
        nus = model.top_down(pvalues)
        backward = tuple(_checked(phi_b(nu, values[l]), values[l], l, _term_name(spec, "backward"))
                         for l, nu in zip(model.backward_nodes, nus))
    return LayerEnergies(tuple(forward), backward, norms)


def _term_name(spec: EnergySpec, which: str) -> str:
    """``energy.<which>=<name>`` of a term of ``spec`` (a callable by its function name)."""
    term = getattr(spec, which)
    return f"energy.{which}={term if isinstance(term, str) else getattr(term, '__name__', repr(term))!r}"


def _checked(f: Array, z: Array, l: int, term: str = "") -> Array:
    """``f``, the per-sample values of an energy term of node ``l`` (``term`` names it); ``ShapeError``
    unless it holds one floating-point energy per sample, shape (B,)."""
    named = f" ({term})" if term else ""
    if f.shape != (z.shape[0],):
        raise ShapeError(f"the energy term of node {l}{named} returned shape {f.shape}; an energy term must return "
                         f"one energy per sample, shape ({z.shape[0]},) (sum over every axis but the batch axis)")
    if not jnp.issubdtype(f.dtype, jnp.floating):
        raise ShapeError(f"the energy term of node {l}{named} returned {f.dtype} values; an energy term must return "
                         "floating-point energies (an integer or boolean energy has no gradient, so neither "
                         "inference nor learning would move): compute it in floats (e.g. .astype(jnp.float32) "
                         "before the sum)")
    return f


def network_energy(model, x: Array, latents: Latents, spec: EnergySpec, *, precision: Array | None = None,
                   pred_latents: Latents | None = None, mus: Latents | None = None
                   ) -> tuple[Float[Array, "B"], LayerEnergies]:
    """Per-sample total energy E_b = sum_l w_l alpha_l F_l + sum_l lambda_l G_l, and its terms.

    ``precision`` (w, shape (L,)) multiplies the forward weights (LALR precision schedules, ePC's
    output weight); ``mus``: the forward predictions, when already computed (``layer_energies``).
    The batch energy is ``total.mean()``.
    """
    terms = layer_energies(model, x, latents, spec, pred_latents=pred_latents, mus=mus)
    alpha = jnp.asarray(broadcast(spec.alpha, model.num_nodes, "energy.alpha"))
    if precision is not None:
        alpha = alpha * precision
    total = sum(alpha[i] * f for i, f in enumerate(terms.forward))
    if terms.backward:
        lam = broadcast(spec.lam, len(model.backward_nodes), "energy.lam")
        total = total + sum(w * g for w, g in zip(lam, terms.backward))
    return total, terms


def partial_energy(model, x: Array, latents: Latents, spec: EnergySpec, nodes, *, precision: Array | None = None,
                   pred_latents: Latents | None = None) -> tuple[Array, LayerEnergies]:
    """``network_energy`` restricted to the forward terms of ``nodes`` (the others are reported as 0).

    Only the predictions mu_l, l in ``nodes``, are computed (from ``pred_latents`` when given).
    Forward terms only (no top-down terms): the error front, which uses it, needs lam = 0.
    """
    L = model.num_nodes
    nodes = set(range(1, L + 1) if nodes is None else nodes)
    values = (x,) + tuple(latents)
    pvalues = values if pred_latents is None else (x,) + tuple(pred_latents)
    hidden, output = spec.term("hidden"), spec.term("output")
    alpha = jnp.asarray(broadcast(spec.alpha, L, "energy.alpha"))
    if precision is not None:
        alpha = alpha * precision
    B = x.shape[0]
    forward, norms, total = [], [], 0
    for l in range(1, L + 1):
        z = values[l]
        if l not in nodes:
            forward.append(jnp.zeros((B,), z.dtype))
            norms.append(jnp.zeros((), z.dtype))
            continue
        mu = model.predict(l, pvalues).astype(z.dtype)
        which = "output" if l == L else "hidden"
        f = _checked((output if l == L else hidden)(mu, z), z, l, _term_name(spec, which))
        forward.append(f)
        norms.append(error_norm(mu, z))
        total = total + alpha[l - 1] * f
    return total, LayerEnergies(tuple(forward), (), jnp.stack(norms))
