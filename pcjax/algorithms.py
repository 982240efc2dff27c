"""Training algorithms on one model definition: PC (and its variants) and backprop.

Every algorithm exposes ``init(model) -> TrainState``, ``train_step(state, x, y) -> (state,
metrics)`` (pure; ``jit_train_step`` is its single ``jax.jit``) and ``eval_step(state, x) ->
outputs``. ``y`` is one-hot (B, C); outputs are the network's output-node values.

PC step (DESIGN 1): (1) z_l := mu_l (feed-forward init); (2) z_L := mu_L - beta (mu_L - y);
(3) T inference steps on the free latents; (4) one weight update from (1/beta) dE/dtheta at the
relaxed latents. Variants: ``ipc`` updates the weights at every inference step; ``fu`` (forward
update) takes the predictions of the weight-gradient energy from the initial feed-forward values.

Speed options of ``PCConfig`` (defaults keep the plain computation):

* ``error_front=True``: after the feed-forward init every prediction error is zero except at the
  output, and the non-zero errors move down one edge per inference step. Step t then evaluates only
  the energy terms and latent gradients the front has reached (``error_front_schedule``); the
  skipped ones are exactly zero, so the step computes the same result with less work (unrolled
  steps, so XLA also reuses the feed-forward values of the blocks whose inputs have not moved). The
  weight update likewise evaluates only the terms the front has reached after T steps: when
  T < depth, the blocks below the front get an exactly zero gradient without being evaluated.
  Used for variants ``pc``/``fu`` with clamped output, Gaussian hidden energy and no top-down terms;
  other settings run the full steps.
* ``unroll``: passed to the inference ``lax.scan`` (``True`` = fully unrolled; on CPU this runs
  convolutional networks several times faster, at a compile time growing with T).
* ``compute_dtype="bfloat16"``: predictions (matmuls/convolutions and activations) are computed with
  weights and node values cast to that dtype, while latents, prediction errors, energies, gradients
  w.r.t. the float32 master weights and optimiser states stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from .energies import get_energy
from .errors import ConfigError
from .inference import ActiveSet, LatentOptim, StepInfo, latent_step, mean_layer_energy, relax
from .lalr import Constant, LALRRule, Replay
from .network import EnergySpec, LayerEnergies, Network, _broadcast, nudged_target
from .optim import WeightOptim


class TrainState(eqx.Module):
    """Everything a training step changes: model, weight-optimiser state, step counter, beta."""

    model: Network
    opt_state: optax.OptState
    step: Array
    beta: Array


def _params(model: Network):
    return eqx.filter(model, eqx.is_inexact_array)


def _accuracy(out: Array, y: Array) -> Array:
    return jnp.mean(jnp.argmax(out, -1) == jnp.argmax(y, -1))


_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "f16": "float16",
           "float32": None, "fp32": None, "f32": None}


def resolve_dtype(name: str | None):
    """The compute dtype named by ``name`` (``None``/``float32`` -> None: plain float32)."""
    if name is None:
        return None
    try:
        key = _DTYPES[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown compute_dtype {name!r}; valid choices: bfloat16, float16, float32") from None
    return None if key is None else jnp.dtype(key)


def cast_floats(tree, dtype):
    """Every floating array leaf of ``tree`` cast to ``dtype`` (no-op for ``dtype=None``)."""
    if dtype is None:
        return tree
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def error_front_schedule(num_nodes: int, skip_edges, T: int) -> tuple[ActiveSet, ...]:
    """Active sets of the inference steps before the error front has reached the whole network.

    After the feed-forward init z_l = mu_l (l < L) and the clamped output z_L != mu_L, the only
    non-zero prediction error is at the output. At step t, with C the set of latents moved so far,
    the error of node l can be non-zero iff l = L, l in C, or a source of l (z_{l-1} or a skip
    source) is in C; the gradient of free node l can be non-zero iff its own error or the error of
    a node it feeds can. Every other term and gradient is exactly zero (Gaussian hidden energy:
    phi(mu, z) and its gradient vanish at z = mu; zero gradients leave a fresh SGD/Adam state and the
    latent unchanged). Returns one ``ActiveSet`` per step until every term and latent is active.
    """
    return _error_front(num_nodes, skip_edges, T)[0]


def error_front_terms(num_nodes: int, skip_edges, T: int) -> tuple[int, ...] | None:
    """Nodes whose prediction error can be non-zero after T inference steps from the feed-forward init
    (None: all of them). Only these terms contribute to the weight gradient; the weights of the
    other blocks get an exactly zero gradient (deep networks with T < depth)."""
    return _error_front(num_nodes, skip_edges, T)[1]


def _error_front(num_nodes: int, skip_edges, T: int):
    L = int(num_nodes)
    sources = {l: {l - 1} | {s for s, t in skip_edges if t == l} for l in range(1, L + 1)}
    feeds = {l: {k for k in range(1, L + 1) if l in sources[k]} for l in range(1, L)}
    all_terms, all_free = set(range(1, L + 1)), set(range(1, L))
    moved: set[int] = set()
    schedule = []

    def error_nodes():
        return {L} | {l for l in range(1, L) if l in moved or sources[l] & moved}

    for _ in range(int(T)):
        terms = error_nodes()
        grads = {l for l in range(1, L) if l in terms or feeds[l] & terms}
        if terms == all_terms and grads == all_free:
            return tuple(schedule), None
        schedule.append(ActiveSet(tuple(sorted(terms)), tuple(l - 1 for l in sorted(grads))))
        moved |= grads
    final = error_nodes()
    return tuple(schedule), (None if final == all_terms else tuple(sorted(final)))


def partial_energy(model: Network, x: Array, latents, spec: EnergySpec, nodes, *, precision: Array | None = None,
                   dtype=None, pred_latents=None) -> tuple[Array, LayerEnergies]:
    """``model.energy`` restricted to the forward terms of ``nodes`` (the others are reported as 0).

    Only the predictions mu_l, l in ``nodes``, are computed (from ``pred_latents`` when given, as in
    ``Network.layer_energies``). With ``dtype`` the predictions are computed from weights and node
    values cast to it and the errors in the latents' dtype. Forward terms only (no top-down terms).
    """
    L = model.num_nodes
    nodes = set(range(1, L + 1) if nodes is None else nodes)
    values = (x,) + tuple(latents)
    pvalues = values if pred_latents is None else (x,) + tuple(pred_latents)
    mc, pvalues = cast_floats(model, dtype), cast_floats(pvalues, dtype)
    hidden, output = get_energy(spec.hidden), get_energy(spec.output)
    alpha = jnp.asarray(_broadcast(spec.alpha, L, "energy.alpha"))
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
        mu = mc._predict(l, pvalues).astype(z.dtype)
        f = (output if l == L else hidden)(mu, z)
        forward.append(f)
        norms.append(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(z - mu).reshape(B, -1), axis=1))))
        total = total + alpha[l - 1] * f
    return total, LayerEnergies(tuple(forward), (), jnp.stack(norms))


class _Base:
    name: str = "base"
    weight_optim: WeightOptim
    total_steps: int

    def _optimizer(self) -> optax.GradientTransformation:
        return self.weight_optim.make(self.total_updates)

    @property
    def total_updates(self) -> int:
        return self.total_steps

    def init(self, model: Network, beta: float = 1.0) -> TrainState:
        """Fresh training state for ``model``."""
        return TrainState(model, self._optimizer().init(_params(model)), jnp.zeros((), jnp.int32), jnp.asarray(beta, jnp.float32))

    def _apply(self, state: TrainState, grads, scale_fn=None) -> TrainState:
        params = _params(state.model)
        updates, opt_state = self._optimizer().update(grads, state.opt_state, params)
        if scale_fn is not None:
            updates = scale_fn(updates)
        model = eqx.apply_updates(state.model, updates)
        return TrainState(model, opt_state, state.step + 1, state.beta)

    @property
    def jit_train_step(self):
        """``train_step`` compiled once (equinox filter-jit)."""
        if not hasattr(self, "_jit_train"):
            self._jit_train = eqx.filter_jit(self.train_step)
        return self._jit_train

    @property
    def jax_jit_train_step(self):
        """``train_step`` under plain ``jax.jit``: the same computation as ``jit_train_step`` with less
        per-call Python overhead (noticeable for small networks, ~0.1-0.2 ms a step on CPU). Needs every
        leaf of the state to be an array (true for the built-in blocks, whose other fields are static)."""
        if not hasattr(self, "_jax_jit_train"):
            self._jax_jit_train = jax.jit(self.train_step)
        return self._jax_jit_train

    @property
    def jit_eval_step(self):
        """``eval_step`` compiled once."""
        if not hasattr(self, "_jit_eval"):
            self._jit_eval = eqx.filter_jit(self.eval_step)
        return self._jit_eval


@dataclass(frozen=True)
class PCConfig:
    """Hyper-parameters of predictive-coding training."""

    T: int = 8
    latent: LatentOptim = field(default_factory=LatentOptim)
    energy: EnergySpec = field(default_factory=EnergySpec)
    lalr: LALRRule = field(default_factory=Constant)
    lalr_weights: bool = False
    variant: str = "pc"
    beta: float = 1.0
    latent_grad: str = "sample"
    eval_steps: int = 0
    unroll: int | bool = 1
    nudge: str = "clamp"
    error_front: bool = False
    compute_dtype: str | None = None
    contrast: bool = False

    def __post_init__(self):
        if resolve_dtype(self.compute_dtype) is not None and (self.variant == "ipc" or self.nudge == "soft"):
            raise ConfigError("algorithm.compute_dtype is available for variants pc and fu with nudge=clamp")
        if self.nudge not in ("clamp", "soft"):
            raise ConfigError(f"algorithm.nudge must be 'clamp' or 'soft'; got {self.nudge!r}")
        if self.nudge == "soft" and self.variant == "ipc":
            raise ConfigError("algorithm.nudge=soft is not available with variant=ipc")
        if self.variant not in ("pc", "ipc", "fu"):
            raise ConfigError(f"algorithm.variant must be one of pc, ipc, fu; got {self.variant!r}")
        if self.T < 0:
            raise ConfigError(f"algorithm.T must be >= 0, got {self.T}")
        if self.beta == 0:
            raise ConfigError("algorithm.beta must be non-zero (the weight update is scaled by 1/beta)")
        if self.contrast and (self.variant == "ipc" or self.nudge == "soft" or resolve_dtype(self.compute_dtype)):
            raise ConfigError("algorithm.contrast is available for variants pc and fu with nudge=clamp "
                              "and float32 compute")


class PC(_Base):
    """Predictive coding (standard, bidirectional when ``energy.lam > 0``, iPC, forward-update)."""

    def __init__(self, config: PCConfig, weight_optim: WeightOptim, total_steps: int, name: str | None = None):
        self.config, self.weight_optim, self.total_steps = config, weight_optim, total_steps
        self.name = name or ("ipc" if config.variant == "ipc" else "pc")

    @property
    def total_updates(self) -> int:
        return self.total_steps * (self.config.T if self.config.variant == "ipc" else 1)

    def init(self, model: Network, beta: float | None = None) -> TrainState:
        return super().init(model, self.config.beta if beta is None else beta)

    # ------------------------------------------------------------------ helpers
    def _weight_scaler(self, rho: Array):
        if not self.config.lalr_weights:
            return None

        def scale(updates):
            for i in range(len(updates.blocks)):
                updates = eqx.tree_at(
                    lambda u, i=i: u.blocks[i], updates,
                    replace_fn=lambda b, i=i: jax.tree_util.tree_map(lambda a: a * rho[i].astype(a.dtype), b),
                )
            return updates

        return scale

    def _weight_grads(self, model, x, latents, latents0, beta, nodes=None):
        cfg = self.config
        pred = latents0 if cfg.variant == "fu" else None
        dtype = resolve_dtype(cfg.compute_dtype)

        def loss(m):
            if nodes is not None:  # error front: the other terms are exactly zero
                per_sample, terms = partial_energy(m, x, latents, cfg.energy, nodes, dtype=dtype, pred_latents=pred)
            elif dtype is not None:
                per_sample, terms = cast_floats(m, dtype).energy(
                    cast_floats(x, dtype), latents, cfg.energy, pred_latents=cast_floats(latents if pred is None else pred, dtype))
            else:
                per_sample, terms = m.energy(x, latents, cfg.energy, pred_latents=pred)
            return per_sample.mean(), terms

        (energy, terms), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
        grads = jax.tree_util.tree_map(lambda g: g / beta.astype(g.dtype), grads)
        return energy, terms, grads

    # -------------------------------------------------------------------- steps
    def train_step(self, state: TrainState, x: Array, y: Array):
        """One PC training step on a batch (x, one-hot y); returns the new state and metrics."""
        cfg, model = self.config, state.model
        L = model.num_nodes
        dtype = resolve_dtype(cfg.compute_dtype)
        if dtype is None:
            mus = model.feedforward(x)
        else:
            mus = tuple(m.astype(x.dtype) for m in cast_floats(model, dtype).feedforward(cast_floats(x, dtype)))
        latents0 = tuple(jax.lax.stop_gradient(m) for m in mus)
        target = nudged_target(mus[-1], y.astype(mus[-1].dtype), state.beta, cfg.energy.output)
        loss = get_energy(cfg.energy.output)(latents0[-1], y).mean()
        free_nodes = tuple(range(L - 1))
        step_args = dict(T=cfg.T, free_nodes=free_nodes, num_nodes=L, latent_grad=cfg.latent_grad)

        if cfg.nudge == "soft":
            return self._soft_step(state, x, y, latents0, loss)
        if cfg.variant == "ipc":
            state, free, infos = self._ipc(state, x, latents0[:-1], target, step_args)
            model = state.model
        else:
            free, infos = relax(self._energy_fn(model, x, target), latents0[:-1], optim=cfg.latent, rule=cfg.lalr,
                                unroll=cfg.unroll, schedule=self._front(model), **step_args)

        latents = tuple(free) + (target,)
        nodes = self._front_terms(model) if cfg.variant != "ipc" else None
        energy, terms, grads = self._weight_grads(model, x, latents, latents0, state.beta, nodes)
        if cfg.contrast and cfg.energy.bidirectional:  # at lam = 0 the free-phase gradient is zero
            free_target = nudged_target(mus[-1], y.astype(mus[-1].dtype), 0.0, cfg.energy.output)
            grads = self._contrast(model, x, latents0, free_target, state.beta, nodes, grads, step_args,
                                   infos.step_scale)
        if cfg.variant != "ipc":
            rho = infos.step_scale[-1] if cfg.T > 0 else jnp.ones((L,))
            state = self._apply(state, grads, self._weight_scaler(rho))
        trace = jnp.concatenate([infos.layer_energy, mean_layer_energy(terms)[None]], axis=0)
        metrics = {
            "loss": loss,
            "energy": energy,
            "acc": _accuracy(latents0[-1], y),
            "layer_energy": trace,
            "error_norm": terms.error_norm,
            "step_scale": infos.step_scale[-1] if cfg.T > 0 else jnp.ones((L,)),
        }
        return state, metrics

    def _energy_fn(self, model: Network, x: Array, target: Array):
        """The inference energy with the output held at ``target``: ``energy_fn(free, precision[, nodes])``
        (``nodes``: the error front's active terms; the compute dtype when one is set)."""
        cfg = self.config
        dtype = resolve_dtype(cfg.compute_dtype)

        def energy_fn(free, precision, nodes=None):
            latents = free + (target,)
            if nodes is not None:
                return partial_energy(model, x, latents, cfg.energy, nodes, precision=precision, dtype=dtype)
            if dtype is not None:
                return cast_floats(model, dtype).energy(cast_floats(x, dtype), latents, cfg.energy,
                                                        precision=precision, pred_latents=cast_floats(latents, dtype))
            return model.energy(x, latents, cfg.energy, precision=precision)

        return energy_fn

    def _contrast(self, model, x, latents0, free_target, beta, nodes, grads, step_args, step_scales):
        """Contrastive (equilibrium-propagation) weight update: subtract the gradient at the *free*
        equilibrium, reached by the same relaxation with the output held at its own prediction
        (zero nudge: mu_L, or softmax(mu_L) for a cross-entropy output): dtheta = (1/beta) [dE/dtheta(z_nudged) - dE/dtheta(z_free)].

        With lam = 0 the free equilibrium is the feed-forward pass, where every forward error and so
        dE/dtheta is zero: the update equals standard PC. With top-down terms (lam > 0) the free
        equilibrium is not the feed-forward pass; the pull of the (initially random) top-down
        predictors then moves the latents without any target, and standard PC would learn that pull
        as if it were an error signal. Subtracting the free-phase gradient keeps only the part of the
        update the target caused. Separate top-down predictors V keep their own (nudged-phase)
        gradient, so that they still learn to predict the latents (with tied top-down weights the whole
        gradient of W is contrastive). Applied only when top-down terms are on (lam > 0). The free phase replays the nudged phase's
        per-step LALR multipliers (a rule such as error-normalised would otherwise pick different
        step sizes in the two phases, and the difference would measure the step sizes, not the
        target). Costs a second relaxation.
        """
        cfg = self.config
        rule = Replay(cfg.lalr, step_scales)
        free0, _ = relax(self._energy_fn(model, x, free_target), latents0[:-1], optim=cfg.latent, rule=rule,
                         unroll=cfg.unroll, **step_args)
        _, _, g0 = self._weight_grads(model, x, tuple(free0) + (free_target,), latents0, beta, nodes)
        if model.backward:
            g0 = eqx.tree_at(lambda m: m.backward, g0,
                             replace_fn=lambda b: jax.tree_util.tree_map(jnp.zeros_like, b))
        return jax.tree_util.tree_map(lambda a, b: a - b, grads, g0)

    def _front_applies(self) -> bool:
        cfg = self.config
        return (cfg.error_front and cfg.variant in ("pc", "fu") and cfg.nudge == "clamp"
                and not cfg.energy.bidirectional and get_energy(cfg.energy.hidden) is get_energy("gaussian"))

    def _front(self, model: Network) -> tuple[ActiveSet, ...]:
        """The error-front schedule when ``error_front`` is on and applies (see module doc), else ()."""
        return error_front_schedule(model.num_nodes, model.skip_edges, self.config.T) if self._front_applies() else ()

    def _front_terms(self, model: Network) -> tuple[int, ...] | None:
        """Energy terms of the weight update under the error front (None: all)."""
        return error_front_terms(model.num_nodes, model.skip_edges, self.config.T) if self._front_applies() else None

    def _soft_step(self, state, x, y, latents0, loss):
        """Soft nudging (equilibrium-propagation form): every node, the output included, is free, and
        the energy gains beta * C(z_L, y) with C the output loss; F = E + beta C. The weight update is
        (1/beta) dE/dtheta at the nudged equilibrium, which tends to dC(mu_L)/dtheta (backprop) as
        beta -> 0 because the free equilibrium (beta = 0) is the feed-forward pass, where dE/dtheta = 0.
        The output's own energy term is Gaussian here (z_L is a continuous free node)."""
        cfg, model = self.config, state.model
        L = model.num_nodes
        spec = EnergySpec(cfg.energy.hidden, "gaussian", cfg.energy.backward, cfg.energy.alpha, cfg.energy.lam)
        cost = get_energy(cfg.energy.output)
        beta = state.beta

        def energy_fn(free, precision):
            per_sample, terms = model.energy(x, free, spec, precision=precision)
            return per_sample + beta * cost(free[-1], y), terms

        free, infos = relax(energy_fn, latents0, T=cfg.T, optim=cfg.latent, rule=cfg.lalr, unroll=cfg.unroll,
                            free_nodes=tuple(range(L)), num_nodes=L, latent_grad=cfg.latent_grad)

        def wloss(m):
            per_sample, terms = m.energy(x, free, spec, pred_latents=latents0 if cfg.variant == "fu" else None)
            return per_sample.mean(), terms

        (energy, terms), grads = eqx.filter_value_and_grad(wloss, has_aux=True)(model)
        grads = jax.tree_util.tree_map(lambda g: g / beta.astype(g.dtype), grads)
        rho = infos.step_scale[-1] if cfg.T > 0 else jnp.ones((L,))
        state = self._apply(state, grads, self._weight_scaler(rho))
        trace = jnp.concatenate([infos.layer_energy, mean_layer_energy(terms)[None]], axis=0)
        metrics = {"loss": loss, "energy": energy, "acc": _accuracy(latents0[-1], y), "layer_energy": trace,
                   "error_norm": terms.error_norm, "step_scale": rho}
        return state, metrics

    def _ipc(self, state, x, free0, target, step_args):
        cfg = self.config
        optimizer = cfg.latent.make()
        B = x.shape[0]

        def body(carry, t):
            st, z, zstate = carry
            precision = cfg.lalr.scales(t, jnp.zeros((st.model.num_nodes,)), cfg.T).precision

            def objective(free, m):
                per_sample, terms = m.energy(x, free + (target,), cfg.energy, precision=precision)
                return per_sample.mean(), terms

            (energy, terms), (gz, gw) = eqx.filter_value_and_grad(
                lambda args: objective(*args), has_aux=True
            )((z, st.model))
            if cfg.latent_grad == "sample":
                gz = tuple(B * g for g in gz)
            rho = cfg.lalr.scales(t, terms.error_norm, cfg.T).step
            gz = tuple(rho[n] * g for n, g in zip(step_args["free_nodes"], gz))
            upd, zstate = optimizer.update(gz, zstate, z)
            z = optax.apply_updates(z, upd)
            gw = jax.tree_util.tree_map(lambda g: g / st.beta.astype(g.dtype), gw)
            st = self._apply(st, gw, self._weight_scaler(rho))
            return (st, z, zstate), StepInfo(mean_layer_energy(terms), energy, rho)

        (state, free, _), infos = jax.lax.scan(body, (state, free0, optimizer.init(free0)), jnp.arange(cfg.T))
        return state, free, infos

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Output readout: feed-forward mu_L, or z_L after ``eval_steps`` free inference steps.

        The inference readout frees every node including the output (whose energy is then
        Gaussian) and relaxes from the feed-forward values; it only differs from mu_L when
        top-down terms (lam > 0) pull on the output.
        """
        cfg, model = self.config, state.model
        mus = model.feedforward(x)
        if cfg.eval_steps == 0:
            return mus[-1]
        spec = EnergySpec(cfg.energy.hidden, "gaussian", cfg.energy.backward, cfg.energy.alpha, cfg.energy.lam)
        L = model.num_nodes

        def energy_fn(free, precision):
            return model.energy(x, free, spec)

        free, _ = relax(
            energy_fn, tuple(jax.lax.stop_gradient(m) for m in mus), T=cfg.eval_steps, optim=cfg.latent,
            free_nodes=tuple(range(L)), num_nodes=L, latent_grad=cfg.latent_grad,
        )
        return free[-1]


class Backprop(_Base):
    """Backprop baseline: the same model trained by jax.grad of the feed-forward loss.

    loss(theta) = (1/B) sum_b phi_out(mu_L(x_b; theta), y_b), phi_out = ``loss`` energy term
    (``gaussian`` = 0.5 ||mu_L - y||^2 or ``cross_entropy``), with the same weight optimiser as PC.
    """

    def __init__(self, weight_optim: WeightOptim, total_steps: int, loss: str = "gaussian", name: str = "bp",
                 compute_dtype: str | None = None):
        self.weight_optim, self.total_steps, self.loss, self.name = weight_optim, total_steps, loss, name
        self.compute_dtype = compute_dtype
        get_energy(loss)
        resolve_dtype(compute_dtype)

    def loss_fn(self, model: Network, x: Array, y: Array) -> tuple[Array, Array]:
        """Batch-mean feed-forward loss and the outputs (forward pass in ``compute_dtype`` if set)."""
        dtype = resolve_dtype(self.compute_dtype)
        out = model(x) if dtype is None else cast_floats(model, dtype)(cast_floats(x, dtype)).astype(x.dtype)
        return get_energy(self.loss)(out, y).mean(), out

    def train_step(self, state: TrainState, x: Array, y: Array):
        """One backprop step; returns the new state and metrics."""
        (loss, out), grads = eqx.filter_value_and_grad(self.loss_fn, has_aux=True)(state.model, x, y)
        state = self._apply(state, grads)
        return state, {"loss": loss, "energy": loss, "acc": _accuracy(out, y)}

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Feed-forward output mu_L."""
        return state.model(x)
