"""Network: blocks between latent nodes, skip edges, optional top-down predictors, and the energy.

Nodes ``z_0 .. z_L``: ``z_0 = x`` (clamped input), ``z_L`` the output node. ``blocks[l-1]`` is
``f_l`` (node l-1 -> node l). Latents are a separate pytree: the tuple ``(z_1, ..., z_L)``.

Forward prediction with skips:   mu_l = f_l(z_{l-1}) + sum_{(s, l) in skip_edges} S_{s,l}(z_s)
Top-down prediction:             nu_l = g_{l+1}(z_{l+1})                       (l in backward_nodes)
Bidirectional energy (per sample, averaged over the batch):
    E = (1/B) sum_b [ sum_{l=1..L} alpha_l phi_f(mu_l, z_l) + sum_{l in backward_nodes} lambda_l phi_b(nu_l, z_l) ]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .blocks import get_activation
from .energies import EnergyFn, get_energy
from .errors import ConfigError, ShapeError

Latents = tuple[Array, ...]


class Tied(eqx.Module):
    """Top-down predictor with tied weights: nu_l = act(L_{l+1}^T z_{l+1}).

    ``L_{l+1}`` is the linear part of the forward block f_{l+1} (``block.linear``); the transpose
    is taken with ``jax.linear_transpose`` so it works for any block exposing ``linear``.
    """

    act: str = eqx.field(static=True, default="identity")


@dataclass(frozen=True)
class EnergySpec:
    """Which energy terms the network uses and how they are weighted.

    ``hidden``/``output``: phi_f for hidden nodes / the output node; ``backward``: phi_b.
    ``alpha``: forward weights (scalar or one per node 1..L); ``lam``: top-down weights (scalar or
    one per backward node). ``lam == 0`` skips the top-down terms entirely (exactly standard PC).
    """

    hidden: str | EnergyFn = "gaussian"
    output: str | EnergyFn = "gaussian"
    backward: str | EnergyFn = "gaussian"
    alpha: float | tuple[float, ...] = 1.0
    lam: float | tuple[float, ...] = 0.0

    @property
    def bidirectional(self) -> bool:
        lam = self.lam if isinstance(self.lam, tuple) else (self.lam,)
        return any(float(v) != 0.0 for v in lam)


class LayerEnergies(NamedTuple):
    """Per-node, per-sample energy terms and error norms."""

    forward: tuple[Float[Array, "B"], ...]   # F_l = phi_f(mu_l, z_l), l = 1..L
    backward: tuple[Float[Array, "B"], ...]  # G_l = phi_b(nu_l, z_l), l in backward_nodes
    error_norm: Float[Array, "L"]            # sqrt(mean_b ||z_l - mu_l||^2)


def _broadcast(value: float | Sequence[float], n: int, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * n
    value = tuple(float(v) for v in value)
    if len(value) != n:
        raise ConfigError(f"{name} has {len(value)} entries but the network needs {n}")
    return value


class Network(eqx.Module):
    """A predictive-coding network; also the model that backprop trains (``feedforward``)."""

    blocks: tuple[eqx.Module, ...]
    skips: tuple[eqx.Module, ...]
    backward: tuple[eqx.Module, ...]
    skip_edges: tuple[tuple[int, int], ...] = eqx.field(static=True)
    backward_nodes: tuple[int, ...] = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)
    node_shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(
        self,
        blocks: Sequence[eqx.Module],
        input_shape: Sequence[int],
        *,
        skips: Sequence[tuple[int, int, eqx.Module]] = (),
        backward: Sequence[tuple[int, eqx.Module]] = (),
    ):
        """Build and shape-check a network.

        ``skips``: ``(source_node, target_node, projection)`` edges, source < target - 0.
        ``backward``: ``(node l, g_{l+1})`` top-down predictors of node l from node l+1
        (use ``Tied(act)`` for tied weights).
        """
        self.blocks = tuple(blocks)
        self.input_shape = tuple(int(s) for s in input_shape)
        edges = tuple((int(s), int(t)) for s, t, _ in skips)
        for s, t in edges:
            if not 0 <= s < t <= len(self.blocks):
                raise ConfigError(f"skip edge {s}->{t} is invalid for a network with {len(self.blocks)} blocks")
        self.skip_edges = edges
        self.skips = tuple(m for _, _, m in skips)
        self.backward_nodes = tuple(int(l) for l, _ in backward)
        self.backward = tuple(m for _, m in backward)
        for l in self.backward_nodes:
            if not 0 <= l < len(self.blocks):
                raise ConfigError(f"top-down predictor for node {l} is invalid: nodes 0..{len(self.blocks) - 1}")
        self.node_shapes = self._infer_shapes()

    # ---------------------------------------------------------------- shapes
    def _infer_shapes(self) -> tuple[tuple[int, ...], ...]:
        shapes = [self.input_shape]
        for l, block in enumerate(self.blocks, start=1):
            x = jax.ShapeDtypeStruct((2,) + shapes[l - 1], jnp.float32)
            try:
                mu = jax.eval_shape(block, x)
            except Exception as err:  # noqa: BLE001 - re-raised with the block named
                raise ShapeError(
                    f"block {l} ({type(block).__name__}) cannot take node {l - 1} of shape {shapes[l - 1]}: {err}"
                ) from err
            shapes.append(tuple(mu.shape[1:]))
        for (s, t), proj in zip(self.skip_edges, self.skips):
            out = jax.eval_shape(proj, jax.ShapeDtypeStruct((2,) + shapes[s], jnp.float32))
            if tuple(out.shape[1:]) != shapes[t]:
                raise ShapeError(
                    f"skip edge {s}->{t} ({type(proj).__name__}) maps shape {shapes[s]} to {tuple(out.shape[1:])}, "
                    f"but node {t} has shape {shapes[t]}; use a projection (e.g. a Dense or 1x1 Conv) that matches"
                )
        return tuple(shapes[1:])

    @property
    def num_nodes(self) -> int:
        """L, the number of latent nodes (= blocks)."""
        return len(self.blocks)

    # ----------------------------------------------------------- predictions
    def _predict(self, l: int, values: Sequence[Array]) -> Array:
        """mu_l = f_l(z_{l-1}) + sum over skip edges (s, l) of S(z_s)."""
        mu = self.blocks[l - 1](values[l - 1])
        for (s, t), proj in zip(self.skip_edges, self.skips):
            if t == l:
                mu = mu + proj(values[s])
        return mu

    def predictions(self, values: Sequence[Array]) -> tuple[Array, ...]:
        """mu_l = f_l(z_{l-1}) + sum_skips S(z_s) for l = 1..L, from node values (z_0, ..., z_{L-1}[, z_L])."""
        return tuple(self._predict(l, values) for l in range(1, self.num_nodes + 1))

    def feedforward(self, x: Array) -> tuple[Array, ...]:
        """Feed-forward pass: every node takes its prediction, z_l := mu_l. Returns (mu_1, ..., mu_L)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"network input must have shape (B, {self.input_shape}) but got {tuple(x.shape)}")
        values = [x]
        for l in range(1, self.num_nodes + 1):
            values.append(self._predict(l, values))
        return tuple(values[1:])

    def __call__(self, x: Array) -> Array:
        """Feed-forward output mu_L (what backprop trains and evaluation reads out)."""
        return self.feedforward(x)[-1]

    def top_down(self, values: Sequence[Array]) -> tuple[Array, ...]:
        """nu_l = g_{l+1}(z_{l+1}) for every l in ``backward_nodes``."""
        nus = []
        for l, g in zip(self.backward_nodes, self.backward):
            if isinstance(g, Tied):
                block = self.blocks[l]
                if not hasattr(block, "linear"):
                    raise ConfigError(f"tied top-down weights need block {l + 1} to expose .linear()")
                transpose = jax.linear_transpose(block.linear, jnp.zeros_like(values[l]))
                (nu,) = transpose(values[l + 1])
                nus.append(get_activation(g.act)(nu))
            else:
                nus.append(g(values[l + 1]))
        return tuple(nus)

    # ---------------------------------------------------------------- energy
    def layer_energies(
        self,
        x: Array,
        latents: Latents,
        spec: EnergySpec,
        *,
        pred_latents: Latents | None = None,
    ) -> LayerEnergies:
        """Per-node energy terms.

        F_l = phi_f(mu_l, z_l) (phi_f = ``spec.output`` for l = L, else ``spec.hidden``), and, if
        ``spec.lam != 0``, G_l = phi_b(nu_l, z_l). Predictions are made from ``pred_latents`` when
        given (forward-update rule: predictions from the initial feed-forward values) and from
        ``latents`` otherwise.
        """
        if len(latents) != self.num_nodes:
            raise ShapeError(f"expected {self.num_nodes} latents (z_1..z_L) but got {len(latents)}")
        values = (x,) + tuple(latents)
        pvalues = values if pred_latents is None else (x,) + tuple(pred_latents)
        mus = self.predictions(pvalues)
        hidden, output = get_energy(spec.hidden), get_energy(spec.output)
        forward = []
        for l, (mu, z) in enumerate(zip(mus, latents), start=1):
            phi = output if l == self.num_nodes else hidden
            forward.append(phi(mu, z))
        norms = jnp.stack(
            [jnp.sqrt(jnp.mean(jnp.sum(jnp.square(z - mu).reshape(z.shape[0], -1), axis=1))) for mu, z in zip(mus, latents)]
        )
        backward: tuple[Array, ...] = ()
        if spec.bidirectional:
            if not self.backward_nodes:
                raise ConfigError(
                    "energy.lam > 0 needs top-down predictors: build the model with backward=true (or tied)"
                )
            phi_b = get_energy(spec.backward)
            nus = self.top_down(pvalues)
            backward = tuple(phi_b(nu, values[l]) for l, nu in zip(self.backward_nodes, nus))
        return LayerEnergies(tuple(forward), backward, norms)

    def energy(
        self,
        x: Array,
        latents: Latents,
        spec: EnergySpec,
        *,
        precision: Array | None = None,
        pred_latents: Latents | None = None,
    ) -> tuple[Float[Array, "B"], LayerEnergies]:
        """Per-sample total energy E_b = sum_l pi_l alpha_l F_l + sum_l lambda_l G_l, and its terms.

        ``precision`` (pi, shape (L,)) multiplies the forward weights; LALR precision schedules use it.
        The batch energy is ``total.mean()``.
        """
        terms = self.layer_energies(x, latents, spec, pred_latents=pred_latents)
        alpha = jnp.asarray(_broadcast(spec.alpha, self.num_nodes, "energy.alpha"))
        if precision is not None:
            alpha = alpha * precision
        total = sum(alpha[i] * f for i, f in enumerate(terms.forward))
        if terms.backward:
            lam = _broadcast(spec.lam, len(self.backward_nodes), "energy.lam")
            total = total + sum(w * g for w, g in zip(lam, terms.backward))
        return total, terms


def nudged_target(mu_out: Array, y: Array, beta: Array | float, output_energy: str | Callable) -> Array:
    """Output node value under nudging: z_L = mu_L - beta * (mu_L - y).

    beta = 1 clamps the output to the target y. For a cross-entropy output the interpolation is done
    between softmax(mu_L) and y so that z_L stays a distribution.
    """
    mu_out = jax.lax.stop_gradient(mu_out)
    if get_energy(output_energy) is get_energy("cross_entropy"):
        mu_out = jax.nn.softmax(mu_out, axis=-1)
    beta = jnp.asarray(beta, mu_out.dtype)
    return jnp.where(beta == 1.0, y.astype(mu_out.dtype), mu_out - beta * (mu_out - y))
