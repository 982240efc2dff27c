"""Bidirectional energy: lam = 0 is standard PC exactly; lam > 0 adds the top-down terms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pcjax as pj
from pcjax.algorithms import weight_gradient


def _data(B=16, d=6, c=3):
    x = jax.random.normal(jax.random.PRNGKey(1), (B, d))
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (B,), 0, c), c)
    return x, y


def _algo(lam, steps=10, lalr=None):
    cfg = pj.PCConfig(T=5, latent=pj.LatentOptim(lr=0.1, momentum=0.5), energy=pj.EnergySpec(lam=lam),
                      lalr=lalr or pj.lalr.Constant())
    return pj.PC(cfg, pj.WeightOptim(lr=1e-2), steps)


def test_lambda_zero_equals_standard_pc_exactly():
    x, y = _data()
    with_back = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, backward="learned")
    plain = pj.Network(with_back.blocks, with_back.input_shape)
    latents = tuple(m + 0.1 for m in with_back.feedforward(x))
    spec0 = pj.EnergySpec(lam=0.0)
    e_b, _ = with_back.energy(x, latents, spec0)
    e_p, _ = plain.energy(x, latents, pj.EnergySpec())
    np.testing.assert_array_equal(e_b, e_p)
    g_b = jax.grad(lambda z: with_back.energy(x, z, spec0)[0].sum())(latents)
    g_p = jax.grad(lambda z: plain.energy(x, z, pj.EnergySpec())[0].sum())(latents)
    for a, b in zip(g_b, g_p):
        np.testing.assert_array_equal(a, b)

    # Training trajectories: identical forward parameters after several steps.
    a_b, a_p = _algo(0.0), _algo(0.0)
    s_b, s_p = a_b.init(with_back), a_p.init(plain)
    for _ in range(4):
        s_b, m_b = a_b.jit_train_step(s_b, x, y)
        s_p, m_p = a_p.jit_train_step(s_p, x, y)
        np.testing.assert_array_equal(m_b["energy"], m_p["energy"])
    for bb, bp in zip(s_b.model.blocks, s_p.model.blocks):
        np.testing.assert_array_equal(bb.weight, bp.weight)
        np.testing.assert_array_equal(bb.bias, bp.bias)
    # The unused top-down weights receive no update beyond weight decay (their gradient is zero).
    g = eqx.filter_grad(lambda m: m.energy(x, latents, spec0)[0].mean())(with_back)
    assert all(float(jnp.abs(gb.weight).max()) == 0.0 for gb in g.backward)


def test_lambda_positive_adds_top_down_term():
    x, _ = _data()
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, backward="learned")
    latents = tuple(m + 0.1 for m in net.feedforward(x))
    lam = 0.3
    e_bi, terms = net.energy(x, latents, pj.EnergySpec(lam=lam))
    e_std, _ = net.energy(x, latents, pj.EnergySpec())
    nus = net.top_down((x,) + latents)
    expected_back = sum(0.5 * jnp.sum((latents[l - 1] - nu) ** 2, axis=1) for l, nu in zip(net.backward_nodes, nus))
    np.testing.assert_allclose(e_bi, e_std + lam * expected_back, rtol=1e-6)
    assert net.backward_nodes == (1, 2)


def test_tied_top_down_is_transpose_of_forward_weights():
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, act="identity", backward="tied")
    z2 = jax.random.normal(jax.random.PRNGKey(3), (4, 8))
    values = (None, None, z2, None)
    nu1 = net.top_down((jnp.zeros((4, 6)), jnp.zeros((4, 8)), z2, jnp.zeros((4, 3))))[0]
    np.testing.assert_allclose(nu1, z2 @ net.blocks[1].weight.T, rtol=1e-6)
    del values


def test_bidirectional_requires_top_down_predictors():
    x, y = _data()
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    try:
        net.energy(x, net.feedforward(x), pj.EnergySpec(lam=0.1))
    except pj.ConfigError as err:
        assert "backward" in str(err)
    else:
        raise AssertionError("expected ConfigError")


def _contrast_algo(lam, contrast, lalr=None, opt="adamw"):
    cfg = pj.PCConfig(T=5, latent=pj.LatentOptim(lr=0.1, momentum=0.5), energy=pj.EnergySpec(lam=lam),
                      lalr=lalr or pj.lalr.Constant(), update=pj.Contrastive() if contrast else pj.Equilibrium())
    return pj.PC(cfg, pj.WeightOptim(name=opt, lr=1e-2, weight_decay=0.0, schedule="constant", momentum=0.0), 10)


def test_contrastive_update_equals_standard_pc_at_lambda_zero():
    """At lam = 0 the free equilibrium is the feed-forward pass: the free-phase weight gradient is zero
    for Gaussian and cross-entropy outputs (whose free target is softmax(mu_L)), with or without
    top-down blocks, so the contrastive update is standard PC."""
    x, y = _data()
    for backward in ("none", "learned"):
        net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, backward=backward)
        for output in ("gaussian", "cross_entropy"):
            spec = pj.EnergySpec(output=output)
            cfg = pj.PCConfig(T=5, latent=pj.LatentOptim(lr=0.1, momentum=0.5), energy=spec, update=pj.Contrastive())
            algo = pj.PC(cfg, pj.WeightOptim(lr=1e-2), 10)
            mus = net.feedforward(x)
            free_phase = algo.problem(net, x, y, mus, jnp.asarray(1.0), free_output=True)
            free0, _ = algo.inference.run(free_phase.energy_fn, free_phase.init, free_nodes=free_phase.free_nodes,
                                          num_nodes=3)
            _, _, g0 = weight_gradient(net, x, free_phase.latents(free0), spec, jnp.asarray(1.0))
            worst = max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(g0))
            assert worst < 1e-6, (backward, output, worst)
            s, _ = algo.jit_train_step(algo.init(net), x, y)  # and a full step runs
            assert s.step == 1


def test_contrastive_update_ignores_the_top_down_pull_without_a_target():
    """Target = the network's own prediction: no error signal. Plain bidirectional PC still moves the
    forward weights (the random top-down predictors pull the latents away from the feed-forward pass,
    and that pull is learned as if it were an error); the contrastive update leaves them exactly in
    place (the nudged and free relaxations coincide) while the top-down predictors still learn."""
    x, _ = _data()
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, backward="learned")
    y_self = net.feedforward(x)[-1]
    for rule in (pj.lalr.Constant(), pj.lalr.ErrorNormalised()):
        moved = {}
        for contrast in (False, True):
            algo = _contrast_algo(0.3, contrast, rule, opt="sgd")  # plain SGD: the update is lr * gradient
            s, _ = algo.jit_train_step(algo.init(net), x, y_self)
            moved[contrast] = (max(float(jnp.abs(b1.weight - b0.weight).max()) for b1, b0 in zip(s.model.blocks, net.blocks)),
                               max(float(jnp.abs(b1.weight - b0.weight).max()) for b1, b0 in zip(s.model.backward, net.backward)))
        assert moved[False][0] > 1e-4, moved
        assert moved[True][0] < 1e-6 * moved[False][0] and moved[True][1] > 1e-4, moved


def test_contrast_rejects_variants_without_a_free_phase():
    import pytest

    with pytest.raises(pj.ConfigError, match="Contrastive cannot wrap Incremental"):
        pj.Contrastive(pj.Incremental())
    with pytest.raises(pj.ConfigError, match="Contrastive cannot be combined with target SoftNudge"):
        pj.PC(pj.PCConfig(target=pj.SoftNudge(), update=pj.Contrastive()), pj.WeightOptim(), 10)


def test_replay_rule_returns_the_recorded_multipliers():
    steps = jnp.arange(12.0).reshape(3, 4)
    rule = pj.lalr.Replay(pj.lalr.Constant(), steps)
    s = rule.scales(jnp.asarray(2), jnp.ones(4), 3)
    np.testing.assert_array_equal(s.step, steps[2])
    np.testing.assert_array_equal(s.precision, jnp.ones(4))
