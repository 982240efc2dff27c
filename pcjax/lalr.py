"""Layer-adaptive learning rates (LALR): per-node multipliers on the inference step.

A rule maps (inference step t, per-node statistics) to two arrays over the latent nodes 1..L:

* ``step``: rho_l, multiplying the latent gradient of node l before the optimiser
  (z_l <- z_l - eta * rho_l * dE/dz_l for plain SGD);
* ``precision``: pi_l, multiplying the forward energy term of node l at step t.

Rules are small frozen dataclasses; a new rule is one class with ``scales(t, error_norm, T)``
registered with ``register_lalr``. A rule's numeric parameters declare their valid range with
:func:`lalr_param` (``r: float = lalr_param(1.5, low=0.0, low_open=True)``); subclassing
:class:`CheckedRule` checks them when the rule is built, so ``lalr.params.r=-2`` is refused at
start-up with a ``ConfigError`` naming the parameter, its value and the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .errors import ConfigError
from .registry import register_into


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
class ParamRange:
    """The valid values of one rule parameter: a finite number in [low, high] (either end open or
    absent), or one of ``choices``; ``why`` says what a value outside the range would do."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    why: str = ""

    def describe(self) -> str:
        """The range as text: ``(0, inf)``, ``[1, inf)`` or ``one of 'sum', 'peak'``."""
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{left}{low}, {high}{right}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid (None when it is)."""
        if self.choices:
            return None if value in self.choices else "is not a valid choice"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a finite number in {self.describe()}"
        below = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        return f"is out of range {self.describe()}" if below or above else None


def lalr_param(default: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False, choices: tuple = (), why: str = "") -> Any:
    """A rule parameter with its valid range (a dataclass field; see :class:`CheckedRule`)."""
    return field(default=default, metadata={"range": ParamRange(low, high, low_open, high_open, tuple(choices), why)})


def _field_problem(f: Any, value: Any) -> tuple[str, ParamRange] | None:
    """(why ``value`` is invalid, the field's range) for one dataclass field of a rule, None when valid.
    A field without a declared range whose default is a number must still be a finite number."""
    spec = f.metadata.get("range")
    if spec is None:
        numeric = isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
        if not numeric or ParamRange().problem(value) is None:
            return None
        spec = ParamRange()
    why = spec.problem(value)
    return None if why is None else (why, spec)


def _rule_name(rule: Any) -> str:
    """The name ``rule``'s class is registered under (its class name when unregistered)."""
    return next((n for n, c in _RULES.items() if c is type(rule)), type(rule).__name__)


def check_rule_params(rule: Any, name: str | None = None) -> None:
    """Raise ``ConfigError`` naming ``lalr.params.<key>``, its value and its valid range for every
    parameter of the dataclass ``rule`` outside the range declared with :func:`lalr_param` (or, for a
    parameter with a numeric default and no declared range, not a finite number)."""
    label = name or _rule_name(rule)
    problems = []
    for f in fields(rule):
        value = getattr(rule, f.name)
        found = _field_problem(f, value)
        if found is not None:
            why, spec = found
            note = f" ({spec.why})" if spec.why else ""
            fix = spec.describe() if spec.choices else f"a value in {spec.describe()}"
            problems.append(f"lalr.params.{f.name}={value!r} {why} for lalr.rule={label}{note}; "
                            f"set lalr.params.{f.name} to {fix}")
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} invalid LALR parameters:\n  " + "\n  ".join(problems))


class CheckedRule:
    """Mixin of a rule dataclass whose :func:`lalr_param` ranges are checked when it is built."""

    def __post_init__(self) -> None:
        check_rule_params(self)


_POSITIVE_STEP = "a step multiplier <= 0 stops inference or makes it climb the energy"


@dataclass(frozen=True)
class Constant(CheckedRule):
    """rho_l = value (the same for every node); pi_l = 1. ``value=1`` is plain PC."""

    value: float = lalr_param(1.0, 0.0, low_open=True, why=_POSITIVE_STEP)

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
class Geometric(CheckedRule):
    """rho_l = r^(L - l): nodes further from the output take larger (r > 1) or smaller steps."""

    r: float = lalr_param(1.5, 0.0, low_open=True, why="r^(L-l) must be a positive step multiplier")

    def scales(self, t, error_norm, T):
        L = error_norm.shape[0]
        depth_from_top = jnp.arange(L, 0, -1) - 1  # L-l for l = 1..L
        return LayerScales(jnp.power(self.r, depth_from_top.astype(error_norm.dtype)), jnp.ones_like(error_norm))


@dataclass(frozen=True)
class ErrorNormalised(CheckedRule):
    """rho_l = clip(mean_k ||e_k|| / (||e_l|| + eps), 1/max_scale, max_scale), gradient stopped.

    Recomputed at every inference step from the current errors: layers whose error is small
    relative to the network's mean take larger steps, equalising the speed of relaxation.
    """

    eps: float = lalr_param(1e-3, 0.0, low_open=True, why="it keeps the ratio finite when a node's error is 0")
    max_scale: float = lalr_param(10.0, 1.0, why="rho is clipped to [1/max_scale, max_scale]")

    def scales(self, t, error_norm, T):
        e = jax.lax.stop_gradient(error_norm)
        rho = jnp.mean(e) / (e + self.eps)
        rho = jnp.clip(rho, 1.0 / self.max_scale, self.max_scale)
        return LayerScales(rho, jnp.ones_like(e))


@dataclass(frozen=True)
class PrecisionSchedule(CheckedRule):
    """Precision schedule following the error wave (node n counted from the output, n = L - l).

    pi_n(t) = 0 for t < n, and exp(-k (t - n)) / sum_{s=n}^{T-1} exp(-k (s - n)) * norm for t >= n,
    so node n switches on when the error front reaches it and its weight decays exponentially.
    ``norm="sum"`` keeps the weights of a node summing to 1 over the T steps (the published form);
    ``norm="peak"`` rescales them so that each node's first active step has weight 1.
    """

    k: float = lalr_param(1.0, 0.0, why="k < 0 makes a node's weight grow over the inference steps")
    norm: str = lalr_param("peak", choices=("sum", "peak"))

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
class LogNormalised(CheckedRule):
    """Error-normalised without a cap, compensating an exponential decay of the error with depth.

    rho_l = (mean_k ||e_k|| / max(||e_l||, floor * max_k ||e_k||)) ** power, gradient stopped.
    ``ErrorNormalised`` is clipped at ``max_scale`` (10 by default), which cannot counter a node whose
    error is 1e-12 of the mean; here the only bound is the relative ``floor`` (rho_l <= (mean / (floor
    * max)) ** power), so a node the error wave has just reached takes a step of the size the others
    take. ``power`` < 1 compensates part of the decay (in log space: log rho_l is ``power`` times the
    log-ratio). A node with exactly zero error has a zero gradient, so its large rho has no effect.
    """

    floor: float = lalr_param(1e-8, 0.0, 1.0, why="the floor is relative to the largest error")
    power: float = lalr_param(1.0, 0.0, why="power < 0 gives the nodes with the largest errors the largest steps")

    def scales(self, t, error_norm, T):
        e = jax.lax.stop_gradient(error_norm)
        denom = jnp.maximum(e, self.floor * jnp.max(e) + 1e-30)
        rho = jnp.power(jnp.mean(e) / denom, self.power)
        return LayerScales(rho, jnp.ones_like(e))


@dataclass(frozen=True)
class TimeGated(CheckedRule):
    """Qi et al.'s time-gated precision inference (DeepPCNs, ICML 2026), nodes l = 1..L, output L.

    Energy terms: term l (node l's error e_l = z_l - mu_l(z_{l-1})) "spikes" at step t = L - l and has
    weight pi_l(t) = 0 before its spike (gated) and, from the spike on,

    * ``mode="S"`` (spiking): 1 at the spike and ``alpha`` at every later step;
    * ``mode="D"`` (decaying): 1 at the spike, then c exp(-k j) at j = t - (L - l) steps after it, with
      c = 1 (``norm="peak"``) or, as in the official code, c = sum_{i < T - (L - l)} exp(-k i) / 100
      (``norm="qi"``; about 0.016 for k = 1).

    Steps (gating): node l takes steps from t = L - 1 - l on, the step at which the term above it
    (l + 1) spikes. That first step is driven by e_{l+1} at weight 1 alone (its own term is still
    gated), which is how the official code moves the node just below the lowest active term: its
    energy at step t sums the terms l >= L - t, recomputing their predictions from the values below,
    and every free node descends that energy. Nodes below take no step, so they keep their
    feed-forward values. T >= L - 1 lets the error reach node 1; T >= L lets every term spike.
    ``gate=False`` drops the gating: every node steps at every t, and before its spike a term weighs
    ``alpha`` (S) or 0 (D; ungated D with ``norm="peak"`` is the peak-normalised ``precision`` rule);
    with ``alpha = 1`` and no gating, S is plain PC exactly.
    """

    mode: str = lalr_param("S", choices=("S", "D"))
    alpha: float = lalr_param(1e-3, 0.0, 1.0, why="the weight after the spike is a fraction of the spike's")
    k: float = lalr_param(1.0, 0.0, why="k < 0 makes a node's weight grow after its spike")
    gate: bool = lalr_param(True, choices=(True, False))
    norm: str = lalr_param("peak", choices=("peak", "qi"))

    def scales(self, t, error_norm, T):
        L = error_norm.shape[0]
        dtype = error_norm.dtype
        spike = jnp.arange(L - 1, -1, -1)  # L - l for l = 1..L
        since = t - spike
        ones = jnp.ones_like(error_norm)
        if self.mode == "S":  # 1 at the spike, alpha at every other step
            weight = jnp.where(since == 0, ones, jnp.asarray(self.alpha, dtype))
        else:  # 1 at the spike, then c exp(-k j)
            decay = jnp.exp(-self.k * jnp.maximum(since, 0).astype(dtype))
            if self.norm == "qi":  # the official code: exp(-k j) * sum_{i < T - (L - l)} exp(-k i) / 100
                i = jnp.arange(max(int(T), 1))
                raw = jnp.exp(-self.k * i.astype(dtype))
                decay = decay * jnp.sum(jnp.where(i < (T - spike)[:, None], raw, 0.0), axis=1) / 100.0
            weight = jnp.where(since == 0, ones, jnp.where(since > 0, decay, 0.0))
        if not self.gate:
            return LayerScales(ones, weight)
        steps = (since >= -1).astype(dtype)  # node l steps from the spike of term l + 1 on
        return LayerScales(steps, jnp.where(since >= 0, weight, 0.0).astype(dtype))


_RULES: dict[str, type] = {
    "constant": Constant,
    "geometric": Geometric,
    "error_normalised": ErrorNormalised,
    "precision": PrecisionSchedule,
    "log_normalised": LogNormalised,
    "time_gated": TimeGated,
}


def register_lalr(name: str, cls: type, *, overwrite: bool = False) -> type:
    """Register a new LALR rule class under ``name`` (selectable with ``lalr.rule=name``); a name
    already taken by another class, a built-in's included, raises ``ConfigError`` unless ``overwrite``."""
    return register_into(_RULES, "LALR rule", name, cls, overwrite=overwrite)


def available_lalr() -> tuple[str, ...]:
    """Names of the registered LALR rules."""
    return tuple(sorted(_RULES))


def make_lalr(rule: str = "constant", **params) -> LALRRule:
    """Instantiate a rule by name with its parameters (clear error for unknown names/parameters and for
    values outside a parameter's range)."""
    try:
        cls = _RULES[rule]
    except KeyError:
        raise ConfigError(f"unknown lalr.rule {rule!r}; valid choices: {', '.join(available_lalr())}") from None
    try:
        made = cls(**params)
    except TypeError as err:
        raise ConfigError(f"invalid parameters for lalr.rule={rule}: {err}") from None
    if is_dataclass(made) and not isinstance(made, CheckedRule):  # a user rule: its declared ranges
        check_rule_params(made, rule)
    return made
