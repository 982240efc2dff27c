"""Auxiliary neurons along VGG's long skip (``model.skip=long`` + ``model.aux_neurons``): real answers.

* same key, same weights: the auxiliary network computes the plain skip network's function exactly
  (node by node: main halves equal the plain nodes, every auxiliary half equals S(z_3)), so backprop's
  gradients on the weights both networks share are the same;
* with zero auxiliary errors (every a_n = S(z_3)) the energy equals the plain network's at any main values;
* the skip's error takes as many inference steps as the main path's: from the feed-forward values with
  the output clamped, node l's error appears after exactly L - l steps (plain: node 3 after 1 step);
* refusals: auxiliary neurons without the long skip, or with top-down predictors.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.models.aux_chain import ChainCarry, ChainClose, ChainOpen, split
from pcjax.network_energy import EnergySpec
from test_aux_neurons import first_error_steps  # the same PC inference probe as the ResNet's

KEY = jax.random.PRNGKey(0)
SHAPE = (32, 32, 3)
TINY = 1 / 16
SPEC = EnergySpec()
SOURCE = 3  # the long skip leaves node 3


@pytest.fixture(scope="module")
def nets() -> tuple[pj.Network, pj.Network]:
    """(VGG-9 with the long skip edge, the same with auxiliary neurons), built from the same key."""
    plain = pj.build_model("vgg9", SHAPE, 10, key=KEY, width_multiplier=TINY, skip="long")
    aux = pj.build_model("vgg9", SHAPE, 10, key=KEY, width_multiplier=TINY, skip="long", aux_neurons=True)
    return plain, aux


@pytest.fixture(scope="module")
def x() -> jax.Array:
    return jnp.asarray(np.random.default_rng(1).standard_normal((3,) + SHAPE), jnp.float32)


def aux_values(plain: pj.Network, values, skip_value) -> list[jax.Array]:
    """Node values of the auxiliary network holding the plain ``values`` (z_1..z_L) in the main halves
    and ``skip_value`` in every auxiliary half."""
    L, t = plain.num_nodes, plain.skip_edges[0][1]
    out = list(values)
    for n in range(SOURCE + 1, t):
        z = values[n - 1]
        out[n - 1] = jnp.concatenate([z.reshape(z.shape[0], -1), skip_value.reshape(z.shape[0], -1)], axis=-1)
    assert t == L
    return out


def test_the_chain_replaces_the_skip_edge(nets):
    plain, aux = nets
    L = plain.num_nodes
    assert plain.skip_edges == ((SOURCE, L),) and aux.skip_edges == ()
    assert isinstance(aux.blocks[SOURCE], ChainOpen) and isinstance(aux.blocks[L - 1], ChainClose)
    assert all(isinstance(aux.blocks[n - 1], ChainCarry) for n in range(SOURCE + 2, L))
    for n in range(SOURCE + 1, L):  # [vec m_n | a_n]: node n's size plus the output's
        assert aux.node_shapes[n - 1] == (math.prod(plain.node_shapes[n - 1]) + 10,)


def test_feedforward_equals_the_plain_skip_network_node_by_node(nets, x):
    plain, aux = nets
    zp, za = plain.feedforward(x), aux.feedforward(x)
    skip_value = plain.skips[0](x if SOURCE == 0 else zp[SOURCE - 1])
    np.testing.assert_array_equal(za[-1], zp[-1])
    for n in range(SOURCE + 1, plain.num_nodes):
        m, a = split(za[n - 1], plain.node_shapes[n - 1])
        np.testing.assert_array_equal(m, zp[n - 1])
        np.testing.assert_array_equal(a, skip_value)


def test_backprop_gradients_of_the_shared_weights_are_the_same(nets, x):
    plain, aux = nets
    y = jax.nn.one_hot(jnp.arange(x.shape[0]) % 10, 10)

    def loss(net):
        return jnp.sum((net(x) - y) ** 2)

    gp, ga = eqx.filter_grad(loss)(plain), eqx.filter_grad(loss)(aux)
    np.testing.assert_array_equal(ga.blocks[0].conv.weight if hasattr(ga.blocks[0], "conv") else
                                  jax.tree_util.tree_leaves(ga.blocks[0])[0],
                                  gp.blocks[0].conv.weight if hasattr(gp.blocks[0], "conv") else
                                  jax.tree_util.tree_leaves(gp.blocks[0])[0])
    np.testing.assert_allclose(jax.tree_util.tree_leaves(ga.blocks[SOURCE].shortcut)[0],
                               jax.tree_util.tree_leaves(gp.skips[0])[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.tree_util.tree_leaves(ga.blocks[-1].main)[0],
                               jax.tree_util.tree_leaves(gp.blocks[-1])[0], rtol=1e-5, atol=1e-7)


def test_zero_auxiliary_errors_give_the_plain_energy_at_any_main_values(nets, x):
    plain, aux = nets
    rng = np.random.default_rng(2)
    values = tuple(jnp.asarray(rng.standard_normal((x.shape[0],) + s), jnp.float32) for s in plain.node_shapes)
    skip_value = plain.skips[0](values[SOURCE - 1])
    ep, terms_p = plain.energy(x, values, SPEC)
    ea, terms_a = aux.energy(x, tuple(aux_values(plain, values, skip_value)), SPEC)
    np.testing.assert_allclose(ea, ep, rtol=1e-5)
    np.testing.assert_allclose(terms_a.error_norm, terms_p.error_norm, rtol=1e-4)


def test_the_skip_error_reaches_its_source_with_the_main_path(nets, x):
    """Node l's error first appears after L - l steps with auxiliary neurons, as in a chain. With the
    skip edge z_3 moves in the first step, so node 3's error and node 4's (z_4 - f_4(z_3): the node
    above the source sees its input move before the main path's error arrives) appear after 1 step,
    and node 2's after 2."""
    plain, aux = nets
    L = plain.num_nodes
    y = jax.nn.one_hot(jnp.arange(x.shape[0]) % 10, 10) * 5.0
    got_plain, got_aux = first_error_steps(plain, x, y, L), first_error_steps(aux, x, y, L)
    assert got_aux[:-1] == [L - l for l in range(1, L)]
    assert got_plain[SOURCE - 2 : SOURCE + 1] == [2, 1, 1]
    assert L - SOURCE - 1 > 1  # the main path alone would reach node 4 later
    assert got_aux[-1] == got_plain[-1] == 1


def test_aux_neurons_without_the_long_skip_are_refused():
    with pytest.raises(pj.ConfigError, match="set model.skip=long"):
        jax.eval_shape(lambda k: pj.build_model("vgg9", SHAPE, 10, key=k, width_multiplier=TINY, aux_neurons=True), KEY)


def test_aux_neurons_on_the_long_skip_with_top_down_predictors_are_refused():
    with pytest.raises(pj.ConfigError, match="takes no top-down predictors"):
        jax.eval_shape(lambda k: pj.build_model("vgg9", SHAPE, 10, key=k, width_multiplier=TINY, skip="long",
                                                aux_neurons=True, backward="learned"), KEY)
