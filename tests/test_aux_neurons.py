"""Auxiliary neurons on ResNet skip paths (``model.aux_neurons``, Qi et al. 2026): real answers.

* same key, same weights: the auxiliary network computes the plain ResNet's function exactly, node
  by node (main halves and merged block outputs), and with zero auxiliary errors its energy is the
  plain network's;
* the skip signal takes as many nodes as the main path (2 per block): in the prediction graph, and in
  PC inference from the feed-forward values with the output clamped, where the output's error reaches
  node l after exactly L - l steps (as in a chain) instead of jumping ahead along the skips;
* a PC training step with Qi et al.'s recipe runs on a tiny auxiliary ResNet with finite energies;
* ``aux_neurons`` on a model that has no residual blocks, or with top-down predictors, is refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.config import Config, validate_config
from pcjax.experiment import build, build_model_from_config, energy_spec
from pcjax.models.resnet import AuxCarry, AuxOpen, Merged, halves, merge
from pcjax.models.topdown import num_params
from pcjax.network_energy import EnergySpec

KEY = jax.random.PRNGKey(0)
SHAPE = (8, 8, 3)  # 8 -> 4 -> 2 -> 1 pixels over the four stages
TINY = 1 / 16      # 4-8-16-32 channels
SPEC = EnergySpec()


@pytest.fixture(scope="module")
def nets() -> tuple[pj.Network, pj.Network]:
    """(plain ResNet-18, the same with auxiliary neurons), built from the same key."""
    plain = pj.build_model("resnet18", SHAPE, 10, key=KEY, width_multiplier=TINY)
    aux = pj.build_model("resnet18", SHAPE, 10, key=KEY, width_multiplier=TINY, aux_neurons=True)
    return plain, aux


@pytest.fixture(scope="module")
def x() -> jax.Array:
    return jnp.asarray(np.random.default_rng(1).standard_normal((3,) + SHAPE), jnp.float32)


def blocks_of(plain: pj.Network) -> list[tuple[int, int, eqx.Module]]:
    """(input node s, output node t, shortcut S) of every residual block of the plain network."""
    return [(s, t, p) for (s, t), p in zip(plain.skip_edges, plain.skips)]


def same_leaves(a: eqx.Module, b: eqx.Module) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


# ------------------------------------------------------------------- (a) the same function
def test_aux_resnet_holds_the_plain_weights_in_its_blocks(nets):
    plain, aux = nets
    assert aux.num_nodes == plain.num_nodes == 18 and aux.skip_edges == ()
    assert num_params(aux) == num_params(plain)
    opened = {s for s, _, _ in blocks_of(plain)}
    for s, t, proj in blocks_of(plain):
        first, second = aux.blocks[s], aux.blocks[s + 1]
        assert isinstance(first, AuxOpen) and isinstance(second, AuxCarry)
        assert first.merge_input == (s != 1)  # the stem node has no auxiliary half
        assert same_leaves(first.main, plain.blocks[s]) and same_leaves(first.shortcut, proj)
        assert same_leaves(second.main, plain.blocks[s + 1])
        assert aux.node_shapes[s][-1] == aux.node_shapes[t - 1][-1] == 2 * plain.node_shapes[t - 1][-1]
    assert same_leaves(aux.blocks[0], plain.blocks[0]) and 0 not in opened
    assert isinstance(aux.blocks[-1], Merged) and same_leaves(aux.blocks[-1].block, plain.blocks[-1])


def test_feedforward_equals_the_plain_resnet_exactly_node_by_node(nets, x):
    plain, aux = nets
    zp, za = (x, *plain.feedforward(x)), (x, *aux.feedforward(x))
    np.testing.assert_array_equal(za[-1], zp[-1])
    np.testing.assert_array_equal(za[1], zp[1])  # stem
    for s, t, proj in blocks_of(plain):
        m, a = halves(za[s + 1])
        np.testing.assert_array_equal(m, zp[s + 1])              # first conv node: the plain node
        np.testing.assert_array_equal(a, proj(zp[s]))            # its auxiliary neuron: S(block input)
        np.testing.assert_array_equal(halves(za[t])[1], a)       # carried by the identity
        np.testing.assert_array_equal(merge(za[t]), zp[t])       # block output m + a: the plain node
    energy, _ = aux.energy(x, za[1:], SPEC)
    np.testing.assert_array_equal(energy, 0.0)


def aux_values(plain: pj.Network, zp: tuple[jax.Array, ...]) -> list[jax.Array]:
    """Node values of the auxiliary network whose auxiliary errors are zero and whose merged block
    outputs are the plain values ``zp`` up to rounding (z_0 = x included): a_{s+1} = a_t = S(merge(z_s)),
    m_t = z_t - a_t."""
    za = list(zp)
    for s, t, proj in blocks_of(plain):
        a = proj(za[s] if za[s] is zp[s] else merge(za[s]))
        za[s + 1] = jnp.concatenate([zp[s + 1], a], axis=-1)
        za[t] = jnp.concatenate([zp[t] - a, a], axis=-1)
    return za


def test_zero_auxiliary_errors_give_the_plain_energy_anywhere(nets, x):
    """Away from the feed-forward values too: the plain energy is the auxiliary one on the set where
    the auxiliary errors vanish (per node, up to the rounding of m_t = z_t - a_t)."""
    plain, aux = nets
    rng = np.random.default_rng(2)
    zp = [x] + [z + 0.3 * jnp.asarray(rng.standard_normal(z.shape), z.dtype) for z in plain.feedforward(x)]
    za = aux_values(plain, zp)
    for s, t, _ in blocks_of(plain):
        for l in (s + 1, t):
            np.testing.assert_array_equal(halves(aux.predict(l, za))[1], halves(za[l])[1])
    ep, tp = plain.energy(x, tuple(zp[1:]), SPEC)
    ea, ta = aux.energy(x, tuple(za[1:]), SPEC)
    np.testing.assert_allclose(np.asarray(ta.forward), np.asarray(tp.forward), rtol=1e-5)
    np.testing.assert_allclose(ea, ep, rtol=1e-5)
    assert float(ep.min()) > 1.0


# ------------------------------------------------------------- (b) the skip signal's delay
def reads(net: pj.Network, x: jax.Array) -> dict[int, set[int]]:
    """Prediction graph: l -> the nodes k whose values mu_l depends on (nonzero vjp at random values)."""
    rng = np.random.default_rng(3)
    values = [x] + [jnp.asarray(rng.standard_normal((x.shape[0],) + s), jnp.float32) for s in net.node_shapes]
    graph = {}
    for l in range(1, net.num_nodes + 1):
        mu, vjp = jax.vjp(lambda *v, l=l: net.predict(l, v), *values[:l])
        grads = vjp(jnp.ones_like(mu))
        graph[l] = {k for k, g in enumerate(grads) if float(jnp.abs(g).max()) > 0}
    return graph


def distance(graph: dict[int, set[int]], src: int, dst: int) -> int:
    """Shortest path src -> dst in nodes (edges k -> l for k in graph[l])."""
    seen, queue = {src: 0}, deque([src])
    while queue:
        k = queue.popleft()
        for l, sources in graph.items():
            if k in sources and l not in seen:
                seen[l] = seen[k] + 1
                queue.append(l)
    return seen[dst]


def test_the_skip_path_is_as_long_as_the_main_path(nets, x):
    plain, aux = nets
    gp, ga = reads(plain, x), reads(aux, x)
    assert ga == {l: {l - 1} for l in ga}  # a chain: no prediction jumps over a node
    for s, t, _ in blocks_of(plain):
        assert gp[t] == {s, t - 1}
        assert distance(gp, s, t) == 1 and distance(ga, s, t) == 2


def test_the_auxiliary_neurons_carry_the_skip_signal(nets, x):
    """Within the nodes: a_{s+1} reads merge(z_s) through S, a_t reads a_{s+1} by the identity, and
    m_t does not read a_{s+1}: the skip signal reaches the block output only through the two
    auxiliary neurons."""
    plain, aux = nets
    zp = [x, *plain.feedforward(x)]
    za = aux_values(plain, zp)
    s, t, proj = blocks_of(plain)[-1]
    bump = jnp.concatenate([jnp.zeros_like(zp[t]), jnp.ones_like(zp[t])], axis=-1)
    moved = list(za)
    moved[s + 1] = za[s + 1] + bump
    mu, mu_moved = aux.predict(t, za), aux.predict(t, moved)
    np.testing.assert_array_equal(halves(mu_moved)[0], halves(mu)[0])
    np.testing.assert_allclose(halves(mu_moved)[1], halves(mu)[1] + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(halves(aux.predict(s + 1, za))[1], proj(merge(za[s])))


def first_error_steps(net: pj.Network, x: jax.Array, y: jax.Array, T: int, lr: float = 0.5) -> list[int | None]:
    """PC inference (SGD on z_1..z_{L-1}, output clamped to y) from the feed-forward values: for every
    node l, the first step after which its prediction error ||z_l - mu_l|| is nonzero (None: never)."""

    @eqx.filter_jit
    def run(net, x, y):
        free = net.feedforward(x)[:-1]

        def energy(free):
            return net.energy(x, (*free, y), SPEC)[0].sum()

        def step(free, _):
            grads = jax.grad(energy)(free)
            free = tuple(z - lr * g for z, g in zip(free, grads))
            return free, net.energy(x, (*free, y), SPEC)[1].error_norm

        return jax.lax.scan(step, free, None, length=T)[1]

    norms = np.asarray(run(net, x, y))  # (T, L)
    return [next((t + 1 for t in range(T) if norms[t, l] > 1e-6), None) for l in range(net.num_nodes)]


def test_the_output_error_reaches_node_l_after_exactly_L_minus_l_steps(nets, x):
    """Plain: a skip brings the error to a block input one step early (the shortest path to the output);
    auxiliary neurons: after L - l steps, as in a chain. Checked on the last three blocks."""
    plain, aux = nets
    L, T = plain.num_nodes, 7
    y = jax.nn.one_hot(jnp.arange(x.shape[0]) % 10, 10) * 5.0
    gp = reads(plain, x)
    want_plain = [distance(gp, l, L) if distance(gp, l, L) <= T else None for l in range(1, L + 1)]
    want_aux = [L - l if L - l <= T else None for l in range(1, L + 1)]
    got_plain, got_aux = first_error_steps(plain, x, y, T), first_error_steps(aux, x, y, T)
    assert got_aux[:-1] == want_aux[:-1] and got_plain[:-1] == want_plain[:-1]
    assert got_aux[-1] == got_plain[-1] == 1  # the clamped output's error, from the start
    for s, t, _ in blocks_of(plain)[-3:]:
        assert got_plain[s - 1] == got_plain[t - 1] + 1 and got_aux[s - 1] == got_aux[t - 1] + 2


# --------------------------------------------------------------------- (c) a training step
def qi_config(**model) -> dict:
    """A tiny ResNet-18 run with Qi et al.'s recipe: time-gated S precision, forward update, latent
    SGD with Nesterov momentum."""
    c = asdict(Config())
    c["model"].update(name="resnet18", width_multiplier=TINY, **model)
    c["algorithm"].update(name="pc", variant="fu", T=4)
    c["algorithm"]["latent"].update(name="sgd", lr=0.5, momentum=0.1, nesterov=True)
    c["lalr"] = {"rule": "time_gated", "params": {"mode": "S", "alpha": 0.001, "k": 1.0, "gate": True}}
    return c


def test_pc_train_step_on_a_tiny_aux_resnet_gives_finite_energies(x):
    c = qi_config(aux_neurons=True)
    validate_config(c)
    model, algo = build(c, 10, SHAPE, 10)
    assert isinstance(model.blocks[1], AuxOpen)
    y = jax.nn.one_hot(jnp.arange(x.shape[0]) % 10, 10)
    state, metrics = algo.train_step(algo.init(model), x, y)
    energies = np.asarray(metrics["layer_energy"])
    assert np.isfinite(float(metrics["energy"])) and np.all(np.isfinite(energies))
    assert float(metrics["energy"]) > 0
    assert not same_leaves(state.model, model)  # the weights moved


# -------------------------------------------------------------------------- (d) refusals
@pytest.mark.parametrize("name", ["mlp", "mnist_cnn"])
def test_aux_neurons_on_a_model_without_residual_blocks_is_refused(name):
    c = asdict(Config())
    c["model"].update(name=name, aux_neurons=True)
    with pytest.raises(pj.ConfigError, match=rf"model.aux_neurons=True: not an option of model '{name}'"):
        validate_config(c)
    with pytest.raises(pj.ConfigError, match="aux_neurons"):
        build_model_from_config(c, (28, 28, 1) if name == "mnist_cnn" else (784,),
                                10, energy_spec(c))


def test_aux_neurons_with_top_down_predictors_is_refused():
    for backward in ("learned", "tied"):
        with pytest.raises(pj.ConfigError, match="model.aux_neurons=true takes no top-down predictors"):
            jax.eval_shape(lambda k, b=backward: pj.build_model("resnet18", SHAPE, 10, key=k, width_multiplier=TINY,
                                                                  aux_neurons=True, backward=b), KEY)
