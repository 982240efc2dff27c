"""The PyTorch reference of the speed benchmark runs the same PC algorithm as pcjax.

Same weights and batch in both: the relaxed latents, the energy, the weight gradients and the
weights after one full PC step (T SGD-momentum latent steps, then one AdamW step) agree within
float32 tolerance, for the PCX MLP, a residual muPC MLP, a narrow VGG-5 and a narrow ResNet
block stack (skip edges with 1x1 projections).
"""

import functools
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.inference import relax

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch (pip install 'pcjax[bench]')")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root
from benchmarks import torch_reference as tr  # noqa: E402

T = 5
LATENT = pj.LatentOptim(lr=0.05, momentum=0.5)
WOPT = pj.WeightOptim(lr=1e-3, weight_decay=1e-2)


@functools.lru_cache(maxsize=None)
def _case(name):
    key = jax.random.PRNGKey(0)
    if name == "mlp":
        net = pj.build_model("mlp", (28, 28, 1), 10, key=key, width=32, depth=3, act="gelu")
        shape = (28, 28, 1)
    elif name == "resmlp":
        net = pj.build_model("mlp", (12,), 10, key=key, width=16, depth=4, act="relu", residual=True, init="mup")
        shape = (12,)
    elif name == "vgg5":
        net = pj.build_model("vgg5", (16, 16, 3), 10, key=key, width_multiplier=1 / 16)
        shape = (16, 16, 3)
    elif name == "resnet":
        from pcjax.models.resnet import resnet

        net = resnet((8, 8, 3), 10, stages=(1, 1), width_multiplier=1 / 16, key=key)
        shape = (8, 8, 3)
    else:
        raise ValueError(name)
    x = jax.random.normal(jax.random.PRNGKey(1), (6,) + shape)
    y = jax.nn.one_hot(jnp.arange(6) % 10, 10)
    return net, x, y


@eqx.filter_jit
def _pcjax_relaxed(net, x, y):
    mus = net.feedforward(x)
    spec = pj.EnergySpec()

    def energy_fn(free, precision):
        return pj.network_energy(net, x, free + (y,), spec, precision=precision)

    L = net.num_nodes
    free, _ = relax(energy_fn, tuple(mus[:-1]), T=T, optim=LATENT, free_nodes=tuple(range(L - 1)), num_nodes=L)
    return free


def _close(a, b, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _rel_close(a, b, tol):
    """||a - b|| <= tol ||b||: robust to float32 cancellation in small prediction errors."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b) + 1e-12, (np.linalg.norm(a - b), np.linalg.norm(b))


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


@pytest.mark.parametrize("name", ["mlp", "resmlp", "vgg5", "resnet"])
def test_torch_reference_matches_pcjax_pc_step(name):
    """In float64 (no float32 cancellation in the small prediction errors) everything agrees tightly."""
    net, x, y = _case(name)  # built in float32 (fast), cast below
    with jax.enable_x64(True):
        net, x, y = _f64(net), x.astype(jnp.float64), y.astype(jnp.float64)
        tnet = tr.TorchNet.from_pcjax(net).double()
        xt, yt = tr.to_torch_node(x), torch.from_numpy(np.array(y))

        # identical predictions after the weight copy
        for mu_j, mu_t in zip(eqx.filter_jit(net.feedforward)(x), tnet.feedforward(xt)):
            _close(tr.from_torch_node(mu_t), mu_j, rtol=1e-9, atol=1e-10)

        # relaxed latents
        free = _pcjax_relaxed(net, x, y)
        trainer = tr.TorchPC(tnet, T=T, latent_lr=LATENT.lr, latent_momentum=LATENT.momentum, weight_optim=WOPT,
                             total_steps=100)
        zt, target = trainer.relax(xt, yt)
        for zj, z in zip(free, zt):
            _close(tr.from_torch_node(z), zj, rtol=1e-9, atol=1e-10)

        # energy and weight gradients at the relaxed latents
        latents = tuple(free) + (y,)

        def loss(m):
            return m.energy(x, latents, pj.EnergySpec())[0].mean()

        energy_j, grads_j = eqx.filter_jit(eqx.filter_value_and_grad(loss))(net)
        trainer._grad(True)
        tnet.zero_grad(set_to_none=True)
        energy_t = tnet.energy(xt, list(zt) + [target]).mean()
        energy_t.backward()
        _close(energy_t.item(), energy_j, rtol=1e-9)
        gnet = tr.TorchNet.from_pcjax(net).double()  # container for the torch gradients in pcjax layout
        for p, g in zip(gnet.parameters(), tnet.parameters()):
            p.data.copy_(g.grad)
        grads_t = gnet.to_pcjax(net)
        leaves_j = jax.tree_util.tree_leaves(eqx.filter(grads_j, eqx.is_array))
        leaves_t = jax.tree_util.tree_leaves(eqx.filter(grads_t, eqx.is_array))
        assert len(leaves_j) == len(leaves_t) > 0
        for gj, gt in zip(leaves_j, leaves_t):
            _rel_close(gt, gj, 1e-7)


def _check_updates(new_j, new_t, old):
    leaves = [jax.tree_util.tree_leaves(eqx.filter(t, eqx.is_array)) for t in (new_j, new_t, old)]
    assert len(leaves[0]) == len(leaves[1]) == len(leaves[2]) > 0
    for wj, wt, w0 in zip(*leaves):
        # AdamW's first step moves every weight by about lr: compare the updates themselves
        _rel_close(np.asarray(wt) - np.asarray(w0), np.asarray(wj) - np.asarray(w0), 1e-6)


@pytest.mark.parametrize("name", ["mlp", "vgg5"])
def test_full_step_weights_match(name):
    """One whole training step (jitted pcjax PC step vs the torch trainer), float64."""
    net, x, y = _case(name)  # built in float32 (fast), cast below
    with jax.enable_x64(True):
        net, x, y = _f64(net), x.astype(jnp.float64), y.astype(jnp.float64)
        tnet = tr.TorchNet.from_pcjax(net).double()
        algo = pj.PC(pj.PCConfig(T=T, latent=LATENT), WOPT, 100)
        state, metrics = algo.jit_train_step(algo.init(net), x, y)
        trainer = tr.TorchPC(tnet, T=T, latent_lr=LATENT.lr, latent_momentum=LATENT.momentum, weight_optim=WOPT,
                             total_steps=100)
        energy_t = trainer.train_step(tr.to_torch_node(x), torch.from_numpy(np.array(y)))
        _close(energy_t.item(), metrics["energy"], rtol=1e-9)
        _check_updates(state.model, tnet.to_pcjax(net), net)


def test_backprop_reference_matches_pcjax():
    net, x, y = _case("mlp")
    with jax.enable_x64(True):
        net, x, y = _f64(net), x.astype(jnp.float64), y.astype(jnp.float64)
        tnet = tr.TorchNet.from_pcjax(net).double()
        algo = pj.Backprop(WOPT, 100)
        state, metrics = algo.jit_train_step(algo.init(net), x, y)
        loss_t = tr.TorchBP(tnet, weight_optim=WOPT, total_steps=100).train_step(
            tr.to_torch_node(x), torch.from_numpy(np.array(y)))
        _close(loss_t.item(), metrics["loss"], rtol=1e-9)
        _check_updates(state.model, tnet.to_pcjax(net), net)
