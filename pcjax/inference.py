"""Latent relaxation: T optimiser steps on the free latents under ``lax.scan``.

Each step computes g_l = dE/dz_l for the free nodes (E summed over the batch, so every sample's
latents follow the gradient of *its own* energy, independent of the batch size; choose
``latent_grad="mean"`` for the batch-mean convention), scales it per node by the LALR step
multiplier rho_l, and applies one update of an optax optimiser whose state is created fresh for
every batch: z_l <- z_l + optax_update(rho_l * g_l).

``relax(..., schedule=...)`` runs its first steps on a statically known part of the network: step t
evaluates only the energy terms ``schedule[t].terms`` and differentiates only w.r.t. the free latents
``schedule[t].grads`` (the others get a zero gradient and keep their value exactly). PC uses it
for the error front after feed-forward initialisation (``Runtime(error_front=True)``), where
every skipped term and gradient is exactly zero, so the result equals the full computation.

``relax(..., tol=...)`` stops early once the relaxation has converged: after every step it checks
the batch-mean energy's relative change (``tol_on="energy"``: |E_t - E_{t-1}| < tol |E_{t-1}|) or
the largest per-node RMS latent update (``tol_on="update"``: max_l rms(z_l' - z_l) < tol), and the
compiled loop (``lax.while_loop`` bounded by T; with ``unroll=True`` unrolled steps, each under a
``lax.cond``) ends at the first step that meets it, at the earliest after ``min_steps`` steps. The
step that meets it is applied. The trace
keeps its T rows (the rows after the last step repeat its values) and ``StepInfo.steps`` holds the
number of steps run. ``tol=None`` (the default) is the fixed-T scan above, unchanged; ``tol=0``
never triggers and computes what the fixed-T scan does. The early-stopping loop is not
reverse-differentiable (no algorithm differentiates through the relaxation).

``Inference`` is the inference part of an algorithm: T, the latent optimiser, the LALR rule, the
gradient convention and the optional tolerance, applied by ``Inference.run`` to any energy of any
free variables (states for PC, prediction errors for ePC).
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
from .network_energy import LayerEnergies

# energy_fn(free_latents, precision) -> (per-sample energy (B,), LayerEnergies)
EnergyFn = Callable[[tuple[Array, ...], Array], tuple[Array, LayerEnergies]]


@dataclass(frozen=True)
class LatentOptim:
    """The latent optimiser: ``sgd`` (with optional momentum/nesterov) or ``adam``, learning rate ``lr``."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False

    @property
    def compares_energies(self) -> bool:
        """Whether the optimiser compares whole per-sample energies from step to step (``guarded_sgd``),
        so every step must evaluate the whole energy (no error front)."""
        return self.name == "guarded_sgd"

    def make(self) -> optax.GradientTransformationExtraArgs:
        """The optax transformation (its state is re-initialised for every batch). Its ``update`` takes
        the per-sample energy at the current latents as ``value=`` (used by ``guarded_sgd`` only)."""
        if self.name == "sgd":
            return optax.with_extra_args_support(optax.sgd(self.lr, momentum=self.momentum or None,
                                                           nesterov=self.nesterov))
        if self.name == "adam":
            return optax.with_extra_args_support(optax.adam(self.lr))
        if self.name == "guarded_sgd":
            if self.momentum or self.nesterov:
                raise ConfigError("algorithm.latent.name=guarded_sgd is plain gradient descent with a per-sample "
                                  "backtracking guard: set algorithm.latent.momentum=0 (and nesterov=false)")
            return guarded_sgd(self.lr)
        raise ConfigError(f"unknown latent optimiser {self.name!r}; valid choices: sgd, adam, guarded_sgd")


class GuardState(NamedTuple):
    """``guarded_sgd``'s memory of the last accepted point of every sample."""

    params: tuple            # last accepted latents
    grads: tuple             # their gradient
    value: Float[Array, "B"]  # their per-sample energy (inf before the first step)
    scale: Float[Array, "B"]  # each sample's step multiplier s_b (halved at every rejection)


def _per_sample(mask: Array, a: Array) -> Array:
    """``mask`` (B,) broadcast over ``a``'s trailing axes."""
    return mask.reshape(mask.shape + (1,) * (a.ndim - 1))


def guarded_sgd(lr: float, shrink: float = 0.5, rtol: float = 1e-3) -> optax.GradientTransformationExtraArgs:
    """Gradient descent that backs off per sample instead of climbing the energy.

    At step t with per-sample energy E_b(v_t) (``value``): the step is *accepted* for sample b when
    E_b(v_t) is finite and E_b(v_t) <= E_b(v_prev) + rtol |E_b(v_prev)|, where v_prev is b's last
    accepted point; otherwise it is *rejected*: b returns to v_prev and its multiplier halves,
    s_b <- shrink s_b. Then v_{t+1} = v_base - lr s_b g_base (the accepted point and its gradient).
    While every step lowers every sample's energy this is plain gradient descent (to float rounding); a
    step that overshoots costs that sample one step and halves its rate for the rest of the batch's
    relaxation (the state is fresh for every batch). The latest step is not checked (its energy is
    never computed), and a sample whose latents are already non-finite cannot be restored."""

    def init(params):
        batch = jax.tree_util.tree_leaves(params)[0].shape[0]
        return GuardState(params, jax.tree_util.tree_map(jnp.zeros_like, params),
                          jnp.full((batch,), jnp.inf, jnp.float32), jnp.ones((batch,), jnp.float32))

    def update(grads, state, params=None, *, value=None, **_):
        if params is None or value is None:
            raise ValueError("guarded_sgd needs the latents (params) and their per-sample energy (value=)")
        value = value.astype(jnp.float32)
        ok = jnp.isfinite(value) & (value <= state.value + rtol * jnp.abs(state.value))
        ok = ok | jnp.isinf(state.value)  # the first step has nothing to compare with
        scale = jnp.where(ok, state.scale, shrink * state.scale)
        pick = lambda new, old: jnp.where(_per_sample(ok, new), new, old)  # noqa: E731
        base = jax.tree_util.tree_map(pick, params, state.params)
        g = jax.tree_util.tree_map(pick, grads, state.grads)
        updates = jax.tree_util.tree_map(
            lambda b, gi, p: jnp.where(_per_sample(ok, p), 0.0, b - p).astype(p.dtype)
            - (lr * _per_sample(scale, gi)).astype(gi.dtype) * gi, base, g, params)
        return updates, GuardState(base, g, jnp.where(ok, value, state.value), scale)

    return optax.GradientTransformationExtraArgs(init, update)


class ActiveSet(NamedTuple):
    """The part of the network one inference step computes (static).

    ``terms``: node indices (1..L) whose energy terms are evaluated; ``grads``: positions in the
    free-latent tuple that are differentiated and updated.
    """

    terms: tuple[int, ...]
    grads: tuple[int, ...]


def schedule_runs(schedule: Sequence[ActiveSet], K: int) -> tuple[tuple[int, int, ActiveSet], ...]:
    """The first ``K`` steps of ``schedule`` as maximal runs of equal active sets: ``(start, end, active)``
    with ``schedule[start:end]`` all equal to ``active``, in order, covering ``0..K-1``. A relaxation runs
    each as one scanned body (the error front's sets only grow, so a run is a stretch of one set)."""
    runs, t = [], 0
    while t < K:
        end = t + 1
        while end < K and schedule[end] == schedule[t]:
            end += 1
        runs.append((t, end, schedule[t]))
        t = end
    return tuple(runs)


class StepInfo(NamedTuple):
    """What one inference step saw: per-node mean forward energies, total energy, step scales.

    ``steps``: the number of inference steps run, set by ``relax`` when it stops early (``tol``);
    None on the fixed-T path (where it is T).
    """

    layer_energy: Float[Array, "L"]
    energy: Float[Array, ""]
    step_scale: Float[Array, "L"]
    steps: Array | None = None


TOL_ON = ("energy", "update")


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
    active: ActiveSet | None = None,
) -> tuple[tuple[Array, ...], optax.OptState, StepInfo]:
    """One inference step: z <- z + update(rho * dE/dz) on the free latents.

    With ``active`` (see ``ActiveSet``) the energy is ``energy_fn(z, precision, active.terms)`` and
    only the latents ``active.grads`` are differentiated; the others get a zero gradient (the
    optimiser still sees it, so its state evolves as in the full step) and keep their value.
    """
    dummy_norm = jnp.zeros((num_nodes,), jnp.float32)
    precision = rule.scales(t, dummy_norm, T).precision

    def reduce(per_sample):
        return per_sample.sum() if latent_grad == "sample" else per_sample.mean()

    if active is None:
        def objective(z):
            per_sample, terms = energy_fn(z, precision)
            return reduce(per_sample), (per_sample, terms)

        (_, (per_sample, terms)), grads = jax.value_and_grad(objective, has_aux=True)(free)
    else:
        idx = tuple(active.grads)

        def objective(zsub):
            z = list(free)
            for i, zi in zip(idx, zsub):
                z[i] = zi
            per_sample, terms = energy_fn(tuple(z), precision, tuple(active.terms))
            return reduce(per_sample), (per_sample, terms)

        (_, (per_sample, terms)), gsub = jax.value_and_grad(objective, has_aux=True)(tuple(free[i] for i in idx))
        grads = [jnp.zeros_like(z) for z in free]
        for i, g in zip(idx, gsub):
            grads[i] = g
        grads = tuple(grads)
    rho = rule.scales(t, terms.error_norm, T).step
    grads = tuple(rho[n].astype(g.dtype) * g for n, g in zip(free_nodes, grads))
    energy = per_sample.mean()
    optimizer = optax.with_extra_args_support(optimizer)  # a plain optax transformation ignores value=
    updates, opt_state = optimizer.update(grads, opt_state, free, value=per_sample)
    new = optax.apply_updates(free, updates)
    if active is not None:  # untouched latents keep their exact value (z + 0)
        new = tuple(n if i in active.grads else z for i, (n, z) in enumerate(zip(new, free)))
    return new, opt_state, StepInfo(mean_layer_energy(terms), energy, rho)


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
    schedule: Sequence[ActiveSet] = (),
    tol: float | None = None,
    tol_on: str = "energy",
    min_steps: int = 0,
) -> tuple[tuple[Array, ...], StepInfo]:
    """Run T inference steps with ``lax.scan`` (compile time flat in T).

    Returns the relaxed free latents and the stacked ``StepInfo`` of every step (leading axis T).
    ``unroll`` is passed to ``lax.scan`` (``True`` unrolls the loop: on CPU, convolution gradients
    inside a compiled loop run several times slower than unrolled). The first ``len(schedule)``
    steps run unrolled on the active sets ``schedule[t]`` (``energy_fn`` then takes a third
    argument, the energy terms to evaluate; consecutive steps with the same active set run as one
    scanned body, a lone one unrolled); the remaining steps are full steps under the scan.

    With ``tol`` the full steps stop at the first one whose convergence measure (``tol_on``, see
    the module docstring) falls below ``tol`` (not before ``min_steps`` steps have run); the returned
    ``StepInfo.steps`` counts the steps run (schedule steps included, which always run).
    """
    if latent_grad not in ("sample", "mean"):
        raise ConfigError(f"latent_grad must be 'sample' or 'mean', got {latent_grad!r}")
    _check_tol(tol, tol_on, min_steps)
    rule = rule or Constant()
    optimizer = optim.make()
    if T == 0:
        L = num_nodes
        empty = StepInfo(jnp.zeros((0, L)), jnp.zeros((0,)), jnp.zeros((0, L)))
        return free, empty

    step = dict(T=T, optimizer=optimizer, rule=rule, free_nodes=free_nodes, num_nodes=num_nodes,
                latent_grad=latent_grad)

    def body(carry, t):
        z, state = carry
        z, state, info = latent_step(energy_fn, z, state, t, **step)
        return (z, state), info

    state = optimizer.init(free)
    K = min(len(schedule), T)
    head = []
    for t, end, active in schedule_runs(schedule, K):  # a run is one scanned body; a lone step is unrolled
        if end - t == 1:
            free, state, info = latent_step(energy_fn, free, state, jnp.asarray(t), active=active, **step)
            head.append(info)
        else:
            def run(carry, s, active=active):
                z, st = carry
                z, st, info = latent_step(energy_fn, z, st, s, active=active, **step)
                return (z, st), info

            (free, state), infos = jax.lax.scan(run, (free, state), jnp.arange(t, end), unroll=unroll)
            head.extend(jax.tree_util.tree_map(lambda a, i=i: a[i], infos) for i in range(end - t))
    if tol is not None:
        return _relax_until(energy_fn, free, state, head, K, step, tol, tol_on, min_steps, unroll)
    if K == T:
        return free, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *head)
    (free, _), infos = jax.lax.scan(body, (free, state), jnp.arange(K, T), unroll=unroll)
    if head:
        infos = jax.tree_util.tree_map(lambda *a: jnp.concatenate([jnp.stack(a[:-1]), a[-1]]), *head, infos)
    return free, infos


def _check_tol(tol, tol_on, min_steps) -> None:
    if tol is not None and not tol >= 0:
        raise ConfigError(f"algorithm.tol must be None or >= 0, got {tol!r}")
    if tol_on not in TOL_ON:
        raise ConfigError(f"algorithm.tol_on must be one of {', '.join(TOL_ON)}, got {tol_on!r}")
    if not (isinstance(min_steps, int) and min_steps >= 0):
        raise ConfigError(f"algorithm.min_steps must be an integer >= 0, got {min_steps!r}")


def _rms(a: Array) -> Array:
    return jnp.sqrt(jnp.mean(jnp.square(a.astype(jnp.float32)))) if a.size else jnp.zeros((), jnp.float32)


def _relax_until(energy_fn, free, state, head, K, step, tol, tol_on, min_steps, unroll):
    """The full steps K..T-1 of ``relax`` until the convergence test passes (see ``relax``)."""
    T, L = step["T"], step["num_nodes"]
    proto = jax.eval_shape(lambda z, s: latent_step(energy_fn, z, s, jnp.asarray(K), **step)[2], free, state)
    bufs = jax.tree_util.tree_map(lambda a: jnp.zeros((T,) + a.shape, a.dtype), proto)
    for t, info in enumerate(head):
        bufs = jax.tree_util.tree_map(lambda b, a, t=t: b.at[t].set(a), bufs, info)
    # the relative energy change needs a previous energy: NaN (the test fails) until there is one
    prev = head[-1].energy if head else jnp.full((), jnp.nan, proto.energy.dtype)
    carry = (jnp.asarray(K), free, state, prev, jnp.asarray(False), bufs)

    def advance(carry):
        t, z, s, prev, _, bufs = carry
        new, s, info = latent_step(energy_fn, z, s, t, **step)
        if tol_on == "energy":
            done = jnp.abs(info.energy - prev) < tol * jnp.abs(prev)
        else:
            done = jnp.max(jnp.stack([_rms(a - b) for a, b in zip(new, z)])) < tol
        done = done & (t + 1 >= min_steps)
        bufs = jax.tree_util.tree_map(lambda b, a: b.at[t].set(a), bufs, info)
        return t + 1, new, s, info.energy, done, bufs

    if unroll is True:  # unrolled steps, each skipped at run time once the test has passed
        for _ in range(K, T):
            carry = jax.lax.cond(carry[4], lambda c: c, advance, carry)
    else:
        carry = jax.lax.while_loop(lambda c: (c[0] < T) & ~c[4], advance, carry)
    steps, free, _, _, _, bufs = carry
    rows = jnp.arange(T)
    infos = jax.tree_util.tree_map(
        lambda b: jnp.where((rows < steps).reshape((T,) + (1,) * (b.ndim - 1)), b, b[steps - 1]), bufs)
    return free, infos._replace(steps=steps)


@dataclass(frozen=True)
class Inference:
    """The inference part of an algorithm: T steps of ``optim`` on the free variables, each node's
    step scaled by the LALR rule's rho_l (``relax``); with ``tol``, stopped early once converged
    (``tol_on``: ``energy``, the relative energy change, or ``update``, the largest RMS latent update),
    after at least ``min_steps`` steps."""

    T: int = 8
    optim: LatentOptim = LatentOptim()
    lalr: LALRRule = Constant()
    latent_grad: str = "sample"
    tol: float | None = None
    tol_on: str = "energy"
    min_steps: int = 0

    def __post_init__(self):
        if self.T < 0:
            raise ConfigError(f"algorithm.T must be >= 0, got {self.T}")
        if self.latent_grad not in ("sample", "mean"):
            raise ConfigError(f"algorithm.latent_grad must be 'sample' or 'mean', got {self.latent_grad!r}")
        _check_tol(self.tol, self.tol_on, self.min_steps)

    def run(self, energy_fn: EnergyFn, init: tuple[Array, ...], *, free_nodes: Sequence[int], num_nodes: int,
            unroll: int | bool = 1, schedule: Sequence[ActiveSet] = (), rule: LALRRule | None = None,
            T: int | None = None) -> tuple[tuple[Array, ...], StepInfo]:
        """``relax`` with this part's settings (``rule``/``T`` replace the LALR rule / step count)."""
        return relax(energy_fn, init, T=self.T if T is None else T, optim=self.optim, rule=rule or self.lalr,
                     free_nodes=free_nodes, num_nodes=num_nodes, latent_grad=self.latent_grad, unroll=unroll,
                     schedule=schedule, tol=self.tol, tol_on=self.tol_on, min_steps=self.min_steps)
