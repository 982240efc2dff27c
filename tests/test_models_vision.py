"""Vision models: VGG-5/7 (PCX), the VGG-n family, ResNet-18 with skip edges, conv top-down predictors."""

from dataclasses import asdict

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.blocks import Conv, Dense, Identity
from pcjax.config import Config
from pcjax.models import MODELS, mlp
from pcjax.models.resnet import AvgPoolDense, GlobalAvgPool
from pcjax.models.topdown import UpConv, check_top_down, num_params
from pcjax.norm import ConvNorm, GroupNorm

KEY = jax.random.PRNGKey(0)
TINY = 1 / 16  # width multiplier of the small models (VGG-5: 8-16-32-32 channels)


def abstract(name, shape, classes=10, **kw):
    """The model's structure (shapes, static fields) without allocating weights."""
    return jax.eval_shape(lambda k: pj.build_model(name, shape, classes, key=k, **kw), KEY)


def images(shape, B=4, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B,) + tuple(shape)), jnp.float32)


def materialise(net, seed=0):
    """Weights for an abstract network from numpy's RNG: kernels/matrices U(-1, 1)/sqrt(fan_in), vectors
    U(-0.1, 0.1), normalisation gains 1. (Eager initialisation compiles one random kernel per weight
    shape, which dominates the run time of these small-model tests on a CPU.)"""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if len(leaf.shape) >= 2:
            value = rng.uniform(-1, 1, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        elif jax.tree_util.keystr(path).endswith(".gamma"):
            value = np.ones(leaf.shape)
        else:
            value = rng.uniform(-0.1, 0.1, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, net)


@pytest.fixture(scope="module")
def tiny_vgg5():
    return materialise(abstract("vgg5", (16, 16, 3), width_multiplier=TINY, backward="learned"))


@pytest.fixture(scope="module")
def tiny_vgg7():
    return materialise(abstract("vgg7", (32, 32, 3), width_multiplier=TINY, backward="learned"))


@pytest.fixture(scope="module")
def tiny_resnet():
    return materialise(abstract("resnet18", (16, 16, 3), width_multiplier=TINY))


def forward_only(net):
    """The same network without its top-down predictors."""
    return pj.Network(net.blocks, net.input_shape, skips=[(s, t, p) for (s, t), p in zip(net.skip_edges, net.skips)])


# ---------------------------------------------------------------- structure
def test_registry_has_vision_models():
    for name in ("vgg5", "vgg7", "vgg9", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18"):
        assert name in MODELS


def test_vgg5_shapes_and_parameter_count():
    net = abstract("vgg5", (32, 32, 3))
    assert net.node_shapes == ((16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512), (10,))
    # 3*3*3*128+128 + 9*128*256+256 + 9*256*512+512 + 9*512*512+512 + 2048*10+10
    assert num_params(net) == 3_859_210
    tiny = abstract("vgg5", (56, 56, 3))
    assert tiny.node_shapes == ((28, 28, 128), (14, 14, 256), (7, 7, 512), (3, 3, 512), (10,))
    quarter = abstract("vgg5", (32, 32, 3), width_multiplier=0.25)
    assert [s[-1] for s in quarter.node_shapes[:-1]] == [32, 64, 128, 128]
    assert net.blocks[-1].in_shape == (2, 2, 512) and isinstance(net.blocks[-1], Dense)


def test_vgg7_shapes_and_parameter_count():
    net = abstract("vgg7", (32, 32, 3))
    assert net.node_shapes == ((16, 16, 128), (16, 16, 128), (8, 8, 256), (6, 6, 256), (3, 3, 512), (1, 1, 512), (10,))
    assert [b.padding for b in net.blocks[:-1]] == [1, 1, 1, 0, 1, 0]
    assert num_params(net) == 4_581_514
    net56 = abstract("vgg7", (56, 56, 3), 200)
    # PCX: 512 * ((s//4 - 2)//2 - 2)^2 features, i.e. 4x4x512 at 56x56
    assert net56.node_shapes == ((28, 28, 128), (28, 28, 128), (14, 14, 256), (12, 12, 256), (6, 6, 512), (4, 4, 512), (200,))


@pytest.mark.parametrize("depth,convs", [(9, 6), (11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_family_builds(depth, convs):
    net = abstract(f"vgg{depth}", (32, 32, 3))
    assert net.num_nodes == convs + 1
    assert sum(b.pool is not None for b in net.blocks[:-1]) == (4 if depth == 9 else 5)
    assert net.node_shapes[-2][-1] == 512 and net.node_shapes[-1] == (10,)


def test_vgg19_fc_hidden_and_long_skip():
    net = abstract("vgg19", (32, 32, 3), fc_hidden=4096, skip="long")
    assert net.node_shapes[-2:] == ((4096,), (10,))
    assert net.skip_edges == ((3, net.num_nodes),)
    (proj,) = net.skips
    assert isinstance(proj, Dense) and proj.in_shape == (16, 16, 128) and proj.bias is None
    with pytest.raises(pj.ConfigError, match="model.skip"):
        abstract("vgg11", (32, 32, 3), skip="short")


def test_small_inputs_skip_pools_that_do_not_fit():
    net = abstract("vgg11", (8, 8, 3))
    assert net.node_shapes[-2] == (1, 1, 512)
    with pytest.raises(pj.ShapeError, match="image inputs"):
        abstract("vgg5", (64,))


def test_resnet18_nodes_and_skip_edges():
    net = abstract("resnet18", (32, 32, 3))
    assert net.num_nodes == 18
    assert net.node_shapes[0] == (32, 32, 64) and net.node_shapes[-2] == (4, 4, 512) and net.node_shapes[-1] == (10,)
    assert net.skip_edges == tuple((l - 2, l) for l in range(3, 18, 2))
    for (s, t), proj in zip(net.skip_edges, net.skips):
        if net.node_shapes[s - 1] == net.node_shapes[t - 1]:
            assert isinstance(proj, Identity)
        else:  # channels change: learned 1x1 strided projection, no activation, no pool
            assert isinstance(proj, Conv) and proj.weight.shape[:2] == (1, 1) and proj.stride == 2
            assert proj.act == "identity" and proj.pool is None
    projected = [t for (s, t), p in zip(net.skip_edges, net.skips) if not isinstance(p, Identity)]
    assert projected == [7, 11, 15]
    assert isinstance(net.blocks[-1], AvgPoolDense)
    assert num_params(net) == 11_168_266
    imagenet = abstract("resnet18", (64, 64, 3), 200, stem="imagenet")
    assert imagenet.node_shapes[0] == (16, 16, 64) and imagenet.node_shapes[-2] == (2, 2, 512)


def test_sequential_head_shape_inference():
    def make():
        blocks = [Conv(3, 4, key=KEY), pj.Sequential((GlobalAvgPool(), Dense(4, 5, key=KEY)))]
        return pj.Network(blocks, (8, 8, 3))

    net = jax.eval_shape(make)
    assert net.node_shapes == ((8, 8, 4), (5,))


def test_deep_residual_mlp_builds():
    for depth in (64, 128):
        net = abstract("mlp", (784,), width=128, depth=depth, residual=True, init="mup")
        assert net.num_nodes == depth + 1 and len(net.skip_edges) == depth - 1
    out = jax.eval_shape(lambda n, x: n(x), net, jax.ShapeDtypeStruct((4, 784), jnp.float32))
    assert out.shape == (4, 10)


def test_preactivation_residual_mlp_is_mupc_resnet():
    """preact: mu_1 = a_1 W_1 x, mu_l = a_l W_l relu(z_{l-1}) + z_{l-1}, mu_L = a_L W_L relu(z_{L-1})."""
    D, N, depth = 12, 16, 4
    net = pj.build_model("mlp", (D,), 3, key=KEY, width=N, depth=depth, act="relu", residual=True, init="mup",
                         preact=True)
    x = images((D,), B=5)
    z = [m + 0.1 for m in net.feedforward(x)]
    dense = [net.blocks[0]] + [b.layers[1] for b in net.blocks[1:]]
    W = [d.weight for d in dense]
    assert all(d.bias is None for d in dense)
    relu = jax.nn.relu
    expect = [x @ W[0] / np.sqrt(D)]
    expect += [relu(z[l - 1]) @ W[l] / np.sqrt(N * (depth + 1)) + z[l - 1] for l in range(1, depth)]
    expect += [relu(z[depth - 1]) @ W[depth] / N]
    for mu, e in zip(net.predictions((x, *z)), expect):
        np.testing.assert_allclose(mu, e, rtol=1e-5, atol=1e-6)
    # tied top-down weights need post-activation blocks
    with pytest.raises(ValueError, match="tied"):
        pj.build_model("mlp", (D,), 3, key=KEY, width=N, depth=2, preact=True, backward="tied")


def test_config_fields_reach_the_builders():
    from pcjax.experiment import build

    c = asdict(Config())
    c["model"].update(name="vgg5", width_multiplier=TINY, backward="auto")
    c["algorithm"]["name"] = "bp"
    model, _ = build(c, 10, (16, 16, 3), 10)
    assert model.node_shapes[0] == (8, 8, 8) and not model.backward_nodes
    assert isinstance(model.blocks[0].weight, jax.Array)  # a real build with the default initialisation


# ---------------------------------------------------- feed-forward semantics
def _conv(x, w, b=None, stride=1, pad=1):
    y = jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if b is None else y + b


def _maxpool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def test_vgg5_feedforward_matches_hand_written(tiny_vgg5):
    net, x = tiny_vgg5, images((16, 16, 3))

    @jax.jit
    def by_hand(x):
        h = x
        for b in net.blocks[:4]:
            h = _maxpool(jax.nn.gelu(_conv(h, b.weight, b.bias)))
        return h.reshape(h.shape[0], -1) @ net.blocks[4].weight + net.blocks[4].bias

    np.testing.assert_allclose(jax.jit(net.__call__)(x), by_hand(x), rtol=1e-5, atol=1e-5)


def test_resnet18_feedforward_matches_hand_written(tiny_resnet):
    net, x = tiny_resnet, images((16, 16, 3))

    @jax.jit
    def by_hand(x):
        b = net.blocks
        h = jax.nn.gelu(_conv(x, b[0].weight, b[0].bias))
        projs = iter(p for p in net.skips if not isinstance(p, Identity))
        for i in range(1, 17, 2):
            stride = b[i].stride
            a = jax.nn.gelu(_conv(h, b[i].weight, b[i].bias, stride))
            o = jax.nn.gelu(_conv(a, b[i + 1].weight, b[i + 1].bias))
            same = stride == 1 and h.shape[-1] == o.shape[-1]
            h = o + (h if same else _conv(h, next(projs).weight, None, stride, 0))  # skip after the activation
        return h.mean(axis=(1, 2)) @ b[17].dense.weight + b[17].dense.bias

    np.testing.assert_allclose(jax.jit(net.__call__)(x), by_hand(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model,kw", [
    ("tiny_vgg5", None), ("tiny_vgg7", None), ("tiny_resnet", None),
    ("tiny_vgg5", "long skip"), ("tiny_resnet", {"norm": "group"}),
])
def test_energy_zero_after_feedforward(model, kw, request):
    net = request.getfixturevalue(model)
    if kw == "long skip":  # VGG-5 with skip="long": a Dense edge from node 3 into the output node
        net = pj.Network(net.blocks, net.input_shape, skips=[(3, 5, Dense(net.node_shapes[2], 10, key=KEY, use_bias=False))])
    elif kw is not None:  # same conv shapes as the fixture, plus normalisation
        net = materialise(abstract("resnet18", net.input_shape, width_multiplier=TINY, **kw))
    x = images(net.input_shape)
    e, _ = jax.jit(lambda x: net.energy(x, net.feedforward(x), pj.EnergySpec()))(x)
    assert float(jnp.max(jnp.abs(e))) == 0.0


def test_group_norm_is_per_sample():
    gn = GroupNorm(8, 4)
    x = images((4, 4, 8))
    y, y2 = jax.jit(lambda x: (gn(x), gn(x.at[1:].set(100.0))))(x)
    np.testing.assert_allclose(y[0], y2[0], atol=1e-6)
    g = y.reshape(4, 16, 4, 2)
    np.testing.assert_allclose(g.mean(axis=(1, 3)), 0.0, atol=1e-5)
    net = abstract("vgg5", (16, 16, 3), width_multiplier=TINY, norm="layer")
    assert all(isinstance(b, ConvNorm) for b in net.blocks[:4])


# ------------------------------------------------------ top-down predictors
@pytest.mark.parametrize("name,shape,kw", [
    ("vgg5", (32, 32, 3), {}), ("vgg5", (56, 56, 3), {}), ("vgg7", (32, 32, 3), {}), ("vgg7", (56, 56, 3), {}),
    ("vgg19", (32, 32, 3), {"fc_hidden": 64, "skip": "long"}), ("resnet18", (32, 32, 3), {}),
    ("resnet18", (64, 64, 3), {"stem": "imagenet"}),
])
def test_learned_top_down_shapes(name, shape, kw):
    net = abstract(name, shape, backward="learned", **kw)
    assert net.backward_nodes == tuple(range(1, net.num_nodes))
    assert isinstance(net.backward[-1], Dense)
    x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
    nus = jax.eval_shape(lambda n, x: n.top_down((x,) + n.feedforward(x)), net, x)
    for l, nu in zip(net.backward_nodes, nus):
        assert nu.shape[1:] == net.node_shapes[l - 1]


@pytest.mark.parametrize("model", ["tiny_vgg5", "tiny_vgg7"])
def test_bidirectional_energy_is_finite(model, request):
    net = request.getfixturevalue(model)
    assert all(isinstance(g, UpConv) for g in net.backward[:-1])
    x = images(net.input_shape, B=2)

    @jax.jit
    def run(x):
        z = tuple(v + 0.1 for v in net.feedforward(x))
        nus = net.top_down((x,) + z)
        return nus, net.energy(x, z, pj.EnergySpec(lam=0.5))[0], net.energy(x, z, pj.EnergySpec())[0]

    nus, e_bi, e_std = run(x)
    for l, nu in zip(net.backward_nodes, nus):
        assert nu.shape[1:] == net.node_shapes[l - 1]
    assert bool(jnp.all(jnp.isfinite(e_bi))) and bool(jnp.all(e_bi > e_std))


def test_upconv_padding_rules():
    def up(src, dst):
        return jax.eval_shape(lambda: UpConv(src, dst, key=KEY))

    assert up((8, 8, 4), (16, 16, 2)).pad == ((1, 1), (1, 1))      # pooled block
    assert up((6, 6, 4), (8, 8, 2)).factor == (1, 1)               # pad-0 conv
    assert up((6, 6, 4), (8, 8, 2)).pad == ((2, 2), (2, 2))
    assert up((3, 3, 4), (7, 7, 2)).pad == ((1, 2), (1, 2))        # floor pooling 7 -> 3


def test_tied_top_down():
    with pytest.raises(pj.ConfigError, match="learned"):
        abstract("vgg5", (16, 16, 3), width_multiplier=TINY, backward="tied")
    with pytest.raises(pj.ConfigError, match="block 3 pools"):
        abstract("vgg7", (32, 32, 3), width_multiplier=TINY, backward="tied")
    head_only = abstract("vgg5", (16, 16, 3), width_multiplier=TINY, backward="tied", backward_from=4)
    assert head_only.backward_nodes == (4,) and isinstance(head_only.backward[0], pj.Tied)
    net = abstract("resnet18", (16, 16, 3), width_multiplier=TINY, backward="tied")
    assert all(isinstance(g, pj.Tied) for g in net.backward)
    x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    nus = jax.eval_shape(lambda n, x: n.top_down((x,) + n.feedforward(x)), net, x)
    for l, nu in zip(net.backward_nodes, nus):
        assert nu.shape[1:] == net.node_shapes[l - 1]


def test_top_down_shape_check_names_the_node(tiny_vgg5):
    def bad():
        g = UpConv((4, 4, 32), (4, 4, 16), key=KEY)  # built for the wrong node
        check_top_down(pj.Network(tiny_vgg5.blocks, (16, 16, 3), backward=[(2, g)]))

    with pytest.raises(pj.ShapeError, match=r"node 2 .*node 2 has shape \(4, 4, 16\)"):
        jax.eval_shape(bad)
    with pytest.raises(pj.ConfigError, match="backward_from"):
        abstract("vgg5", (16, 16, 3), width_multiplier=TINY, backward="learned", backward_from=5)


# ----------------------------------------------------------------- training
def _batch(shape, B=8, classes=10):
    y = jax.nn.one_hot(jnp.arange(B) % classes, classes)
    return images(shape, B, seed=3), y


@pytest.mark.parametrize("model", ["tiny_vgg5", "tiny_resnet"])
def test_pc_and_backprop_steps_lower_the_loss(model, request):
    net = forward_only(request.getfixturevalue(model))
    x, y = _batch((16, 16, 3))
    wopt = pj.WeightOptim(lr=3e-3, schedule="constant")
    pc = pj.PC(pj.PCConfig(T=2, latent=pj.LatentOptim(lr=0.05)), wopt, 100)
    bp = pj.Backprop(wopt, 100)
    for algo in (pc, bp):
        state = algo.init(net)
        losses = []
        for _ in range(5):
            state, metrics = algo.jit_train_step(state, x, y)
            losses.append(float(metrics["loss"]))
        assert np.all(np.isfinite(losses))
        assert losses[-1] < losses[0], (algo.name, losses)
