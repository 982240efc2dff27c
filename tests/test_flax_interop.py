"""flax modules wrapped as pcjax blocks train exactly like the equivalent native Dense blocks.

A flax MLP with the PC block structure (one wrapped block per layer: Linear + activation), given
the weights of a pcjax ``Dense`` MLP, must produce the same energies, relaxed latents, and
parameters after one PC step and one backprop step, both for ``flax.nnx`` and ``flax.linen``.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import pcjax as pj  # noqa: E402
from pcjax.blocks import get_activation  # noqa: E402
from pcjax.interop.flax import LinenBlock, NNXBlock, from_linen, from_nnx  # noqa: E402

IN_SHAPE, CLASSES, WIDTH, DEPTH, ACT = (3, 3, 1), 4, 6, 2, "tanh"
TOL = dict(rtol=1e-5, atol=1e-6)


def _flatten(x):
    return x.reshape(x.shape[0], -1)


def _native():
    return pj.build_model("mlp", IN_SHAPE, CLASSES, key=jax.random.PRNGKey(0), width=WIDTH, depth=DEPTH, act=ACT)


def _nnx_net(native):
    """nnx twin: block l = Sequential([flatten,] nnx.Linear, activation) with the Dense weights."""
    blocks = []
    for i, d in enumerate(native.blocks):
        lin = nnx.Linear(d.weight.shape[0], d.weight.shape[1], rngs=nnx.Rngs(i))
        lin.kernel[...] = d.weight  # nnx kernel and pcjax Dense weight are both (in, out)
        lin.bias[...] = d.bias
        layers = ([_flatten] if i == 0 else []) + [lin, get_activation(d.act)]
        blocks.append(from_nnx(nnx.Sequential(*layers)))
    return pj.Network(blocks, IN_SHAPE, backward=[(1, pj.Tied(ACT))])


class DenseAct(nn.Module):
    """linen block: act(Dense(flatten(x))), with its linear part exposed for tied weights."""

    features: int
    act: str

    def setup(self):
        self.dense = nn.Dense(self.features)

    def __call__(self, x):
        return get_activation(self.act)(self.dense(_flatten(x)))

    def linear(self, x):
        return _flatten(x) @ self.dense.variables["params"]["kernel"]


def _linen_net(native):
    blocks, shape = [], IN_SHAPE
    for i, d in enumerate(native.blocks):
        block = from_linen(DenseAct(d.weight.shape[1], d.act), jnp.zeros((1,) + shape), jax.random.PRNGKey(i))
        params = {"dense": {"kernel": d.weight, "bias": d.bias}}
        assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(block.params)
        blocks.append(LinenBlock(params, block.module, block.rest, block.linear_kind))
        shape = (d.weight.shape[1],)
    return pj.Network(blocks, IN_SHAPE, backward=[(1, pj.Tied(ACT))])


def _native_leaves(net):
    return [(b.weight, b.bias) for b in net.blocks]


def _nnx_leaves(net):
    out = []
    for b in net.blocks:
        (p,) = [layer for layer in b.params["layers"].values()]
        out.append((p["kernel"], p["bias"]))
    return out


def _linen_leaves(net):
    return [(b.params["dense"]["kernel"], b.params["dense"]["bias"]) for b in net.blocks]


TWINS = {"nnx": (_nnx_net, _nnx_leaves), "linen": (_linen_net, _linen_leaves)}


def _batch():
    x = jax.random.normal(jax.random.PRNGKey(1), (8,) + IN_SHAPE)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (8,), 0, CLASSES), CLASSES)
    return x, y


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def _same_params(native, twin, leaves):
    for (w, b), (k, c) in zip(_native_leaves(native), leaves(twin), strict=True):
        _close(w, k)
        _close(b, c)


@pytest.fixture(params=sorted(TWINS))
def twin(request):
    native = pj.Network(_native().blocks, IN_SHAPE, backward=[(1, pj.Tied(ACT))])
    build, leaves = TWINS[request.param]
    return native, build(native), leaves


def test_wrapped_blocks_are_equinox_blocks_with_flax_params():
    native = _native()
    nb = _nnx_net(native).blocks[0]
    lb = _linen_net(native).blocks[0]
    assert isinstance(nb, NNXBlock) and isinstance(lb, LinenBlock)
    # trainable leaves are exactly the kernel and bias arrays
    assert sorted(a.shape for a in jax.tree_util.tree_leaves(nb)) == [(WIDTH,), (9, WIDTH)]
    assert sorted(a.shape for a in jax.tree_util.tree_leaves(lb)) == [(WIDTH,), (9, WIDTH)]
    assert hasattr(nb, "linear") and hasattr(lb, "linear")
    # to_nnx() returns a module carrying the block's parameters
    module = nb.to_nnx()
    _close(module.layers[1].kernel[...], native.blocks[0].weight)


def test_feedforward_energy_and_relaxation_match(twin):
    native, other, _ = twin
    x, y = _batch()
    for a, b in zip(native.feedforward(x), other.feedforward(x), strict=True):
        _close(a, b)
    spec = pj.EnergySpec(lam=0.3)  # bidirectional: exercises the tied (transposed) linear part too
    latents = tuple(m + 0.1 for m in native.feedforward(x)[:-1]) + (y,)
    e1, t1 = native.energy(x, latents, spec)
    e2, t2 = other.energy(x, latents, spec)
    _close(e1, e2)
    for a, b in zip(t1.forward + t1.backward, t2.forward + t2.backward, strict=True):
        _close(a, b)

    def relaxed(net):
        fn = lambda free, precision: pj.network_energy(net, x, free + (y,), spec, precision=precision)  # noqa: E731
        free0 = tuple(jax.lax.stop_gradient(m) for m in net.feedforward(x)[:-1])
        free, info = pj.relax(fn, free0, T=5, optim=pj.LatentOptim(lr=0.1, momentum=0.5),
                              free_nodes=tuple(range(net.num_nodes - 1)), num_nodes=net.num_nodes)
        return free, info.energy

    (z1, en1), (z2, en2) = relaxed(native), relaxed(other)
    _close(en1, en2)
    for a, b in zip(z1, z2, strict=True):
        _close(a, b)


@pytest.mark.parametrize("kind,lam", [("nnx", 0.0), ("nnx", 0.3), ("linen", 0.0)])
def test_pc_train_step_updates_the_same_weights(kind, lam):
    native = pj.Network(_native().blocks, IN_SHAPE, backward=[(1, pj.Tied(ACT))])
    build, leaves = TWINS[kind]
    other = build(native)
    x, y = _batch()
    cfg = pj.PCConfig(T=6, latent=pj.LatentOptim(lr=0.1, momentum=0.5), energy=pj.EnergySpec(lam=lam))
    results = []
    for net in (native, other):
        algo = pj.PC(cfg, pj.WeightOptim(name="adamw", lr=1e-2, schedule="constant"), 10)
        state = algo.init(net)
        for _ in range(2):
            state, metrics = algo.jit_train_step(state, x, y)
        results.append((state.model, metrics))
    (m1, k1), (m2, k2) = results
    _close(k1["energy"], k2["energy"])
    _close(k1["layer_energy"], k2["layer_energy"])
    _same_params(m1, m2, leaves)
    assert not np.allclose(np.asarray(m1.blocks[0].weight), np.asarray(native.blocks[0].weight))


def test_backprop_train_step_updates_the_same_weights(twin):
    native, other, leaves = twin
    x, y = _batch()
    results = []
    for net in (native, other):
        algo = pj.Backprop(pj.WeightOptim(name="sgd", lr=0.1, schedule="constant"), 10, loss="cross_entropy")
        state = algo.init(net)
        for _ in range(2):
            state, metrics = algo.jit_train_step(state, x, y)
        results.append((state.model, metrics["loss"]))
    (m1, l1), (m2, l2) = results
    _close(l1, l2)
    _same_params(m1, m2, leaves)


def test_blocks_without_a_linear_part_do_not_claim_one():
    plain = from_nnx(nnx.Sequential(nnx.Linear(4, 5, rngs=nnx.Rngs(0)), jnp.tanh, nnx.Linear(5, 2, rngs=nnx.Rngs(1))))
    assert not hasattr(plain, "linear")
    assert hasattr(from_nnx(nnx.Linear(4, 5, rngs=nnx.Rngs(0))), "linear")
    assert hasattr(from_linen(nn.Dense(5), jnp.zeros((1, 4)), jax.random.PRNGKey(0)), "linear")
    net = pj.Network([plain, from_nnx(nnx.Linear(2, 3, rngs=nnx.Rngs(2)))], (4,), backward=[(0, pj.Tied())])
    x = jnp.ones((2, 4))
    with pytest.raises(pj.ConfigError, match="linear"):
        net.top_down((x,) + net.feedforward(x))


def test_frozen_state_is_not_trained():
    bn = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.BatchNorm(3, use_running_average=True, rngs=nnx.Rngs(0)))
    block = from_nnx(bn)
    # trainable leaves: Linear kernel/bias and BatchNorm scale/bias; running statistics are frozen
    assert len(jax.tree_util.tree_leaves(block)) == 4
    assert block(jnp.ones((2, 4))).shape == (2, 3)
    # modules that mutate state when called (RNG counters) work under jit, repeatedly, and stay frozen
    drop = from_nnx(nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1))))
    apply = jax.jit(lambda b, x: b(x))
    first, second = apply(drop, jnp.ones((2, 4))), apply(drop, jnp.ones((2, 4)))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, drop(jnp.ones((2, 4))))


def test_missing_flax_gives_install_hint(monkeypatch):
    import pcjax.interop.flax as interop

    monkeypatch.setitem(sys.modules, "flax", None)
    monkeypatch.setitem(sys.modules, "flax.nnx", None)
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    with pytest.raises(ImportError, match=r"pip install pcjax\[flax\]"):
        interop.from_nnx(object())
    with pytest.raises(ImportError, match=r"pip install pcjax\[flax\]"):
        interop.from_linen(object(), jnp.zeros((1, 2)), jax.random.PRNGKey(0))
