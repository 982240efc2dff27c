"""Network: blocks between latent nodes, skip edges, optional top-down predictors, and the energy.

Nodes ``z_0 .. z_L``: ``z_0 = x`` (clamped input), ``z_L`` the output node. ``blocks[l-1]`` is
``f_l`` (node l-1 -> node l). Latents are a separate pytree: the tuple ``(z_1, ..., z_L)``.

Forward prediction with skips:   mu_l = f_l(z_{l-1}) + sum_{(s, l) in skip_edges} S_{s,l}(z_s)
Top-down prediction:             nu_l = g_{l+1}(z_{l+1})                       (l in backward_nodes)
Bidirectional energy (per sample, averaged over the batch):
    E = (1/B) sum_b [ sum_{l=1..L} alpha_l phi_f(mu_l, z_l) + sum_{l in backward_nodes} lambda_l phi_b(nu_l, z_l) ]
(``pcjax.network_energy``). The network holds structure and predictions; which nodes an algorithm
frees, how it initialises them and how it updates the weights belong to the algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .blocks import get_activation
from .errors import ConfigError, ShapeError
from .network_energy import EnergySpec, LayerEnergies, network_energy

Latents = tuple[Array, ...]


class Tied(eqx.Module):
    """Top-down predictor with tied weights: nu_l = act(L_{l+1}^T z_{l+1}).

    ``L_{l+1}`` is the linear part of the forward block f_{l+1} (``block.linear``); the transpose
    is taken with ``jax.linear_transpose`` so it works for any block exposing ``linear``.
    """

    act: str = eqx.field(static=True, default="identity")


class Prediction(eqx.Module):
    """One node's forward prediction as a module of its own (``Network.prediction(l)``):
    mu_l = f_l(z_{l-1}) + sum_{(s, l) in skip_edges} S_{s,l}(z_s), holding only f_l and the skip
    projections into l (a transformation of mu_l then handles one block, not the whole network)."""

    block: eqx.Module
    skips: tuple[eqx.Module, ...]
    node: int = eqx.field(static=True)
    skip_sources: tuple[int, ...] = eqx.field(static=True)

    @property
    def reads(self) -> frozenset[int]:
        """The node values mu_l reads: l - 1 and the skip sources."""
        return frozenset((self.node - 1,) + self.skip_sources)

    def __call__(self, values: Sequence[Array | None]) -> Array:
        """mu_l from the node values (z_0, z_1, ...); entries it does not read may be None."""
        mu = self.block(values[self.node - 1])
        for s, proj in zip(self.skip_sources, self.skips):
            mu = mu + proj(values[s])
        return mu


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
    def prediction(self, l: int) -> Prediction:
        """mu_l's parts, f_l and the skip projections into l, as a module (:class:`Prediction`)."""
        edges = [(s, proj) for (s, t), proj in zip(self.skip_edges, self.skips) if t == l]
        return Prediction(self.blocks[l - 1], tuple(p for _, p in edges), l, tuple(s for s, _ in edges))

    def predict(self, l: int, values: Sequence[Array]) -> Array:
        """mu_l = f_l(z_{l-1}) + sum over skip edges (s, l) of S(z_s)."""
        return self.prediction(l)(values)

    def predictions(self, values: Sequence[Array]) -> tuple[Array, ...]:
        """mu_l = f_l(z_{l-1}) + sum_skips S(z_s) for l = 1..L, from node values (z_0, ..., z_{L-1}[, z_L])."""
        return tuple(self.predict(l, values) for l in range(1, self.num_nodes + 1))

    def feedforward(self, x: Array) -> tuple[Array, ...]:
        """Feed-forward pass: every node takes its prediction, z_l := mu_l. Returns (mu_1, ..., mu_L)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"network input must have shape (B, {self.input_shape}) but got {tuple(x.shape)}")
        values = [x]
        for l in range(1, self.num_nodes + 1):
            values.append(self.predict(l, values))
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
    def energy(self, x: Array, latents: Latents, spec: EnergySpec) -> tuple[Float[Array, "B"], LayerEnergies]:
        """Per-sample energy E_b = sum_l alpha_l F_l + sum_l lambda_l G_l at node values ``latents``
        (z_1..z_L), and its terms (``pcjax.network_energy.network_energy``)."""
        return network_energy(self, x, latents, spec)
