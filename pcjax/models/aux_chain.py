"""Auxiliary neurons along a long skip edge: the skip's signal takes as many nodes as the main path.

A skip edge (s, t, S) adds S(z_s) to node t's prediction, so in inference the error at node t reaches
z_s in one step while the main path needs t - s steps. Qi et al. (2026) put auxiliary neurons on a
ResNet block's skip path (``pcjax.models.resnet``); this module does the same for a skip over any
number of nodes (VGG's long skip, node 3 -> output). Each node n = s+1 .. t-1 holds, next to its own
value m_n, an auxiliary value a_n of node t's shape, both flattened into one vector
z_n = [vec m_n | vec a_n]:

    mu_{s+1} = [vec f_{s+1}(z_s)       | vec S(z_s)]
    mu_n     = [vec f_n(m_{n-1})       | a_{n-1}]          (n = s+2 .. t-1, identity on the skip path)
    mu_t     = f_t(m_{t-1}) + a_{t-1}

There is no skip edge left. At the feed-forward values every a_n = S(z_s) and mu_t equals the plain
network's f_t(z_{t-1}) + S(z_s) exactly, so backprop trains the same function (``tests/test_aux_chain.py``).
Each auxiliary value shares its node's energy weight and LALR schedule (node index = depth), so with
time-gated inference the skip's error reaches z_s at the step the main path's does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ConfigError


def _flat(x: Array) -> Array:
    return x.reshape(x.shape[0], -1)


def split(z: Array, main_shape: tuple[int, ...]) -> tuple[Array, Array]:
    """(m, a) of a flat node z = [vec m | vec a], with m reshaped to ``main_shape`` (a stays flat)."""
    n = math.prod(main_shape)
    return z[:, :n].reshape((z.shape[0],) + tuple(main_shape)), z[:, n:]


class ChainOpen(eqx.Module):
    """Node s + 1 of a chain: mu = [vec f(z_s) | vec S(z_s)]."""

    main: eqx.Module
    shortcut: eqx.Module

    def __call__(self, z: Array) -> Array:
        return jnp.concatenate([_flat(self.main(z)), _flat(self.shortcut(z))], axis=-1)


class ChainCarry(eqx.Module):
    """Node n of a chain (s + 1 < n < t): mu = [vec f(m_{n-1}) | a_{n-1}], the identity on the skip path."""

    main: eqx.Module
    main_in: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, z: Array) -> Array:
        m, a = split(z, self.main_in)
        return jnp.concatenate([_flat(self.main(m)), a], axis=-1)


class ChainClose(eqx.Module):
    """Node t, the skip's target: mu = f(m_{t-1}) + a_{t-1} (a reshaped to node t's shape)."""

    main: eqx.Module
    main_in: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, z: Array) -> Array:
        m, a = split(z, self.main_in)
        mu = self.main(m)
        return mu + a.reshape(mu.shape)


def refuse_top_down(backward: str) -> None:
    """Auxiliary neurons take no top-down predictors: ConfigError unless ``backward == "none"``."""
    if backward != "none":
        raise ConfigError(f"model.aux_neurons=true takes no top-down predictors (model.backward={backward!r}): "
                          "its nodes hold a main and an auxiliary half; use model.backward=none and an energy "
                          "without top-down terms (energy.lam=0)")


def with_aux_chain(blocks: Sequence[eqx.Module], skip: tuple[int, int, eqx.Module],
                   node_shapes: Sequence[tuple[int, ...]]) -> list[eqx.Module]:
    """The blocks of the same network with the skip (s, t, S) carried by auxiliary neurons in nodes
    s+1 .. t-1 (module doc). ``node_shapes``: the plain network's shapes of nodes 1..L (per sample)."""
    s, t, proj = skip
    if t - s < 2:
        raise ConfigError(f"auxiliary neurons need a skip over at least one node; got the skip {s}->{t}")
    out = list(blocks)
    out[s] = ChainOpen(blocks[s], proj)  # blocks[l - 1] predicts node l
    for n in range(s + 2, t):
        out[n - 1] = ChainCarry(blocks[n - 1], tuple(node_shapes[n - 2]))
    out[t - 1] = ChainClose(blocks[t - 1], tuple(node_shapes[t - 2]))
    return out


__all__ = ["ChainOpen", "ChainCarry", "ChainClose", "refuse_top_down", "split", "with_aux_chain"]
