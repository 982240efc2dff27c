"""Training algorithms on one model definition: PC (and its variants) and backprop.

Every algorithm exposes ``init(model) -> TrainState``, ``train_step(state, x, y) -> (state,
metrics)`` (pure; ``jit_train_step`` is its single ``jax.jit``) and ``eval_step(state, x) ->
outputs``. ``y`` is one-hot (B, C); outputs are the network's output-node values.

PC step (DESIGN 1): (1) z_l := mu_l (feed-forward init); (2) z_L := mu_L - beta (mu_L - y);
(3) T inference steps on the free latents; (4) one weight update from (1/beta) dE/dtheta at the
relaxed latents. Variants: ``ipc`` updates the weights at every inference step; ``fu`` (forward
update) takes the predictions of the weight-gradient energy from the initial feed-forward values.
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
from .inference import LatentOptim, StepInfo, latent_step, mean_layer_energy, relax
from .lalr import Constant, LALRRule
from .network import EnergySpec, Network, nudged_target
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
    unroll: int = 1
    nudge: str = "clamp"

    def __post_init__(self):
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

    def _weight_grads(self, model, x, latents, latents0, beta):
        cfg = self.config
        pred = latents0 if cfg.variant == "fu" else None

        def loss(m):
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
        mus = model.feedforward(x)
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
            def energy_fn(free, precision):
                return model.energy(x, free + (target,), cfg.energy, precision=precision)

            free, infos = relax(energy_fn, latents0[:-1], optim=cfg.latent, rule=cfg.lalr, unroll=cfg.unroll, **step_args)

        latents = tuple(free) + (target,)
        energy, terms, grads = self._weight_grads(model, x, latents, latents0, state.beta)
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

    def __init__(self, weight_optim: WeightOptim, total_steps: int, loss: str = "gaussian", name: str = "bp"):
        self.weight_optim, self.total_steps, self.loss, self.name = weight_optim, total_steps, loss, name
        get_energy(loss)

    def loss_fn(self, model: Network, x: Array, y: Array) -> tuple[Array, Array]:
        """Batch-mean feed-forward loss and the outputs."""
        out = model(x)
        return get_energy(self.loss)(out, y).mean(), out

    def train_step(self, state: TrainState, x: Array, y: Array):
        """One backprop step; returns the new state and metrics."""
        (loss, out), grads = eqx.filter_value_and_grad(self.loss_fn, has_aux=True)(state.model, x, y)
        state = self._apply(state, grads)
        return state, {"loss": loss, "energy": loss, "acc": _accuracy(out, y)}

    def eval_step(self, state: TrainState, x: Array) -> Array:
        """Feed-forward output mu_L."""
        return state.model(x)
