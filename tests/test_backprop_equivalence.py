"""PC weight updates approach backprop gradients; the backprop algorithm is plain jax.grad."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import enable_x64

import pcjax as pj
from pcjax.inference import latent_step, relax
from pcjax.lalr import Constant


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _setup(act="tanh", depth=3):
    net = _f64(pj.build_model("mlp", (5,), 3, key=jax.random.PRNGKey(0), width=7, depth=depth, act=act))
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 5), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (8,), 0, 3), 3).astype(jnp.float64)
    return net, x, y


def _bp_grad(net, x, y):
    return eqx.filter_grad(lambda m: pj.get_energy("gaussian")(m(x), y).mean())(net)


def _flat(tree):
    return jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))])


def _pc_update(net, x, y, beta, nudge, T=800):
    """(old - new) parameters after one PC step with plain SGD(lr=1): exactly the (1/beta)-scaled gradient."""
    target = pj.SoftNudge() if nudge == "soft" else pj.Clamp()
    cfg = pj.PCConfig(T=T, latent=pj.LatentOptim(lr=0.2, momentum=0.5), beta=beta, target=target)
    algo = pj.PC(cfg, pj.WeightOptim(name="sgd", lr=1.0, momentum=0.0, schedule="constant"), 1)
    new, _ = algo.train_step(algo.init(net), x, y)
    return _flat(net) - _flat(new.model)


def test_soft_nudged_pc_update_approaches_backprop_as_beta_shrinks():
    with enable_x64(True):
        net, x, y = _setup()
        g_bp = _flat(_bp_grad(net, x, y))
        errors = []
        for beta in (1.0, 0.1, 0.01, 0.001):
            g_pc = _pc_update(net, x, y, beta, "soft")
            errors.append(float(jnp.linalg.norm(g_pc - g_bp) / jnp.linalg.norm(g_bp)))
        assert all(b < 0.5 * a for a, b in zip(errors, errors[1:])), errors
        assert errors[0] > 1e-2, errors  # a strong nudge is genuinely different from BP
        assert errors[-1] < 2e-3, errors


def test_clamped_output_is_not_backprop_even_for_small_beta():
    """With the output *clamped* at mu_L - beta (mu_L - y) the hidden nodes absorb part of the output
    error at equilibrium ((I + J J^T)^-1 in the linear case), so the limit is a different direction
    than backprop; this documents why ``nudge=soft`` exists."""
    with enable_x64(True):
        net, x, y = _setup()
        g_bp = _flat(_bp_grad(net, x, y))
        g_pc = _pc_update(net, x, y, 1e-3, "clamp")
        cos = float(g_pc @ g_bp / (jnp.linalg.norm(g_pc) * jnp.linalg.norm(g_bp)))
        assert 0.5 < cos < 0.999


def test_fixed_prediction_schedule_recovers_backprop_exactly():
    """With z := mu, output clamped (beta = 1), SGD with step 1 on the latents, the error front moves down
    one node per step; node l's error at step L-l equals the backprop error exactly, so the weight
    gradient of block l taken at that step equals dL/dW_l (Song et al. 2020, zero-divergence IL)."""
    with enable_x64(True):
        net, x, y = _setup(act="tanh", depth=3)
        L = net.num_nodes
        spec = pj.EnergySpec()
        mus = net.feedforward(x)
        target = y
        g_bp = _bp_grad(net, x, y)

        def efn(free, precision):
            return pj.network_energy(net, x, free + (target,), spec, precision=precision)

        opt = pj.LatentOptim(lr=1.0).make()
        free = mus[:-1]
        state = opt.init(free)
        for t in range(L):
            layer = L - t  # block index l (1-based) whose error is exact at step t
            g = eqx.filter_grad(lambda m: m.energy(x, free + (target,), spec)[0].mean())(net)
            np.testing.assert_allclose(g.blocks[layer - 1].weight, g_bp.blocks[layer - 1].weight, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(g.blocks[layer - 1].bias, g_bp.blocks[layer - 1].bias, rtol=1e-9, atol=1e-12)
            free, state, _ = latent_step(efn, free, state, jnp.asarray(t), T=L, optimizer=opt, rule=Constant(),
                                         free_nodes=tuple(range(L - 1)), num_nodes=L)


def test_backprop_algorithm_matches_plain_jax_grad():
    with enable_x64(True):
        net, x, y = _setup()
    net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, net)
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    import optax

    algo = pj.Backprop(pj.WeightOptim(name="sgd", lr=0.1, momentum=0.0, schedule="constant"), 10)
    state = algo.init(net)
    new, metrics = algo.jit_train_step(state, x, y)

    def loss(m):
        return 0.5 * jnp.mean(jnp.sum((m(x) - y) ** 2, axis=1))

    g = eqx.filter_grad(loss)(net)
    expected = eqx.apply_updates(net, jax.tree_util.tree_map(lambda a: -0.1 * a, g))
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(new.model, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(expected, eqx.is_array))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"], loss(net), rtol=1e-6)
    del optax


def test_pc_output_uses_same_loss_as_backprop():
    with enable_x64(True):
        net, x, y = _setup()
        mus = net.feedforward(x)
        bp_loss, _ = pj.Backprop(pj.WeightOptim(), 1).loss_fn(net, x, y)
        _, terms = net.energy(x, mus[:-1] + (y,), pj.EnergySpec())
        np.testing.assert_allclose(terms.forward[-1].mean(), bp_loss, rtol=1e-12)
