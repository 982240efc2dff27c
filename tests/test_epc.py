"""ePC (error optimisation): real answers.

* on a linear network ePC and state PC reach the same equilibrium, the closed-form minimiser of the
  (quadratic) energy, and so the same weight update;
* at depth 20, ePC's energy after k inference steps is far below state PC's from the same start;
* the soft-nudged ePC weight update / beta tends to the backprop gradient as beta -> 0;
* ePC with LALR and skip edges trains; ``algorithm=epc`` is selectable and defaults to standard energy;
* ``reuse_sweep`` (the energy takes the sweep's predictions) is the same step up to rounding, with
  fewer matrix products per inference step.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.algorithms import epc_config, sweep


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _flat(tree):
    return jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))])


def _data(B, d, c, seed=1):
    x = jax.random.normal(jax.random.PRNGKey(seed), (B, d), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(seed + 1), (B,), 0, c), c).astype(jnp.float64)
    return x, y


def _sgd(lr):
    return pj.WeightOptim(name="sgd", lr=lr, momentum=0.0, schedule="constant")


def test_linear_network_epc_and_pc_reach_the_closed_form_equilibrium():
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (4,), 3, key=jax.random.PRNGKey(0), width=5, depth=2, act="identity"))
        x, y = _data(6, 4, 3)
        spec, L = pj.EnergySpec(), net.num_nodes
        mus = net.feedforward(x)

        # Closed form: E is quadratic in the free latents, so z* = z0 - H^-1 grad E(z0) exactly.
        def energy(flat):
            z = (flat[: 6 * 5].reshape(6, 5), flat[6 * 5:].reshape(6, 5))
            return pj.network_energy(net, x, z + (y,), spec)[0].sum()

        z0 = jnp.concatenate([m.ravel() for m in mus[:-1]])
        z_star = z0 - jnp.linalg.solve(jax.hessian(energy)(z0), jax.grad(energy)(z0))

        inf = pj.Inference(T=3000, optim=pj.LatentOptim(lr=0.1))
        free, _ = inf.run(lambda f, p: pj.network_energy(net, x, f + (y,), spec, precision=p), mus[:-1],
                          free_nodes=tuple(range(L - 1)), num_nodes=L)
        weights = jnp.ones((L,))
        errors, _ = inf.run(lambda e, p: pj.network_energy(net, x, sweep(net, x, e) + (y,), spec, precision=p * weights),
                            tuple(jnp.zeros_like(m) for m in mus[:-1]), free_nodes=tuple(range(L - 1)), num_nodes=L)
        states = sweep(net, x, errors)
        np.testing.assert_allclose(jnp.concatenate([z.ravel() for z in free]), z_star, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(jnp.concatenate([z.ravel() for z in states]), z_star, rtol=1e-8, atol=1e-10)

        # Same equilibrium -> the same weight update from the two algorithms.
        cfg = pj.PCConfig(T=3000, latent=pj.LatentOptim(lr=0.1))
        pc, epc = pj.PC(cfg, _sgd(1.0), 1), pj.EPC(cfg.inference, spec, _sgd(1.0), 1)
        s_pc, _ = pc.train_step(pc.init(net), x, y)
        s_epc, _ = epc.train_step(epc.init(net), x, y)
        np.testing.assert_allclose(_flat(s_epc.model), _flat(s_pc.model), rtol=1e-8, atol=1e-10)


def _energy_after(algo, net, x, y):
    _, metrics = algo.train_step(algo.init(net), x, y)
    return np.asarray(metrics["layer_energy"]).sum(axis=1)  # total energy before each step and at the end


def test_epc_energy_after_k_steps_is_far_below_state_pc_at_depth_20():
    """Both minimise the same function from the same point (z = sweep(e) maps one onto the other). State
    PC's error moves down one layer per step; ePC's gradient reaches every layer at once. On a 20-node
    muPC residual MLP, after k = 5 steps ePC's excess energy over the equilibrium is measured 32x below
    state PC's (0.0051 vs 0.162); asserted: at least 10x."""
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (8,), 4, key=jax.random.PRNGKey(0), width=16, depth=19, act="relu",
                                  init="mup", residual=True, preact=True))
        assert net.num_nodes == 20
        x, y = _data(16, 8, 4)

        def final_energies(T):
            inf = pj.Inference(T=T, optim=pj.LatentOptim(lr=0.2))
            pc = pj.PC(pj.PCConfig(T=T, latent=inf.optim), _sgd(0.0), 1)
            return _energy_after(pc, net, x, y), _energy_after(pj.EPC(inf, pj.EnergySpec(), _sgd(0.0), 1), net, x, y)

        e_pc, e_epc = final_energies(5)
        np.testing.assert_allclose(e_pc[0], e_epc[0], rtol=1e-12)  # same start: the feed-forward pass
        e_star = min(e[-1] for e in final_energies(3000))
        excess_pc, excess_epc = e_pc[-1] - e_star, e_epc[-1] - e_star
        assert excess_pc > 0 and excess_epc < 0.1 * excess_pc, (excess_pc, excess_epc)


def test_soft_nudged_epc_update_over_beta_approaches_backprop():
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (5,), 3, key=jax.random.PRNGKey(0), width=7, depth=3, act="tanh"))
        x, y = _data(8, 5, 3)
        g_bp = _flat(eqx.filter_grad(lambda m: pj.get_energy("gaussian")(m(x), y).mean())(net))
        errors = []
        for beta in (1.0, 0.1, 0.01, 0.001):
            epc = pj.EPC(pj.Inference(T=400, optim=pj.LatentOptim(lr=0.2, momentum=0.5)), pj.EnergySpec(), _sgd(1.0), 1,
                         beta=beta)
            new, _ = epc.train_step(epc.init(net), x, y)
            g = _flat(net) - _flat(new.model)
            errors.append(float(jnp.linalg.norm(g - g_bp) / jnp.linalg.norm(g_bp)))
        assert all(b < 0.5 * a for a, b in zip(errors, errors[1:])), errors
        assert errors[0] > 1e-2 and errors[-1] < 2e-3, errors


def test_epc_with_lalr_and_skips_trains():
    net = pj.build_model("mlp", (8,), 4, key=jax.random.PRNGKey(0), width=16, depth=6, act="relu", residual=True,
                         init="mup", preact=True)
    assert net.skip_edges
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 8))
    y = jax.nn.one_hot(jnp.argmax(x[:, :4], axis=1), 4)
    for rule in (pj.lalr.Constant(), pj.lalr.ErrorNormalised(max_scale=2.0)):
        epc = pj.EPC(pj.Inference(T=8, optim=pj.LatentOptim(lr=0.3), lalr=rule), pj.EnergySpec(),
                     pj.WeightOptim(name="adam", lr=0.03, schedule="constant"), 50, beta=0.1)
        state, losses = epc.init(net), []
        for _ in range(30):
            state, m = epc.jit_train_step(state, x, y)
            losses.append(float(m["loss"]))
        assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], (rule, losses)
        assert m["step_scale"].shape == (net.num_nodes,)


def test_epc_rejects_invalid_settings():
    with pytest.raises(pj.ConfigError, match="beta"):
        pj.EPC(pj.Inference(), pj.EnergySpec(), pj.WeightOptim(), 1, beta=0.0)
    with pytest.raises(pj.ConfigError, match="float32"):
        pj.EPC(pj.Inference(), pj.EnergySpec(), pj.WeightOptim(), 1, runtime=pj.Runtime(compute_dtype="bf16"))


def test_epc_without_xla_fusion_trains_the_same_and_is_the_cpu_default(tmp_path):
    """The training step compiled without XLA's CPU fusion pass (``algorithm.xla_fusion=false``, ePC's
    default on a CPU from 32 layers) gives the fused step's weights to float32 rounding on a 16-layer residual MLP:
    after one SGD step within 1e-6, after an epoch of Adam steps (where rounding differences grow) the same
    loss to 1e-3 (measured: 1.5e-4 relative on a 2-core CPU)."""
    import dataclasses

    from pcjax.data import load_dataset
    from pcjax.experiment import build, to_dict
    from pcjax.runtime import resolve_runtime
    from pcjax.training import TrainerConfig, fit

    full = load_dataset("digits")
    one_batch = dataclasses.replace(full, train_x=full.train_x[:64], train_y=full.train_y[:64])
    runs = {}
    for name, data in (("step", one_batch), ("epoch", full)):
        for fusion in (True, False):
            c = to_dict(pj.load_config(None, overrides=["experiment=mnist_resmlp16_epc_se", "dataset=digits",
                                                        "algorithm.T=4", f"algorithm.xla_fusion={str(fusion).lower()}"]
                                          + (["optim=sgd", "optim.lr=0.1", "optim.momentum=0"] if name == "step" else [])))
            model, algo = build(c, 20, data.image_shape, data.num_classes)
            assert algo.runtime.xla_fusion is fusion
            tc = TrainerConfig(epochs=1, batch_size=64, progress=False, seed=0, val_fraction=0.0, chunks_per_epoch=2)
            runs[name, fusion] = fit(algo, model, data, tc)
    on, off = (_flat(eqx.filter(runs["step", f][0].model, eqx.is_array)) for f in (True, False))
    np.testing.assert_allclose(on, off, rtol=0, atol=1e-6)
    init = _flat(eqx.filter(build(c, 20, full.image_shape, full.num_classes)[0], eqx.is_array))
    assert float(jnp.abs(on - init).max()) > 1e-4  # the step moved the weights (500x the tolerance)
    loss = [runs["epoch", f][1]["epochs"][0]["train_loss"] for f in (True, False)]
    assert loss[0] == pytest.approx(loss[1], rel=1e-3)  # measured 1.5e-4 on a 2-core CPU: Adam amplifies rounding
    net = model  # 16 layers: shallower than DEEP_NODES, where the fused step is as fast
    assert resolve_runtime(net, algorithm="epc", backend="cpu").xla_fusion is True
    c = to_dict(pj.load_config(None, overrides=["experiment=mnist_resmlp32_epc_se"]))
    deep = build(c, 20, (28, 28, 1), 10)[1]
    assert deep.runtime.xla_fusion is False  # auto: 32 layers on this CPU
    net = build(c, 20, (28, 28, 1), 10)[0]
    assert resolve_runtime(net, algorithm="epc", backend="cpu").xla_fusion is False
    assert resolve_runtime(net, algorithm="epc", backend="gpu").xla_fusion is True
    assert resolve_runtime(net, algorithm="pc", backend="cpu").xla_fusion is True
    with pytest.raises(pj.ConfigError, match="algorithm.xla_fusion"):
        resolve_runtime(net, xla_fusion="sometimes")


def _dots_in_relaxation(algo, net, x, y) -> int:
    """dot_general operations in the body of the relaxation's scan (one inference step)."""
    jaxpr = jax.make_jaxpr(lambda s: algo.train_step(s, x, y))(algo.init(net)).jaxpr
    bodies = [e.params["jaxpr"].jaxpr for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(bodies) == 1
    return sum(e.primitive.name == "dot_general" for e in bodies[0].eqns)


@pytest.mark.parametrize("case", ["weighted", "nudged", "soft", "top_down", "contrastive"])
def test_reusing_the_sweeps_predictions_changes_the_step_by_rounding_only(case):
    """``reuse_sweep``: the energy takes phi(mu_l, z_l) with the sweep's own mu_l. Same maths: one step
    (relaxation and weight update) agrees with the default to float64 rounding on a residual net with
    skip edges (and top-down terms), for every target; each inference step runs L - 2 fewer
    predictions' transposes and L - 1 fewer predictions (plain MLP: 2L - 1 matrix products
    instead of 4L - 4)."""
    with jax.enable_x64(True):
        backward = "learned" if case in ("top_down", "contrastive") else "none"
        net = _f64(pj.build_model("mlp", (5,), 3, key=jax.random.PRNGKey(0), width=7, depth=4, act="tanh",
                                  residual=True, init="mup", preact=True, backward=backward))
        assert net.skip_edges
        x, y = _data(8, 5, 3)
        spec = pj.EnergySpec(lam=0.3) if backward != "none" else pj.EnergySpec()
        parts = {"target": pj.SoftNudge()} if case == "soft" else {}
        parts.update({"update": pj.Contrastive()} if case == "contrastive" else {})
        target = "weighted" if case in ("weighted", "top_down") else "nudged"

        def step(reuse):
            inf = pj.Inference(T=6, optim=pj.LatentOptim(lr=0.2, momentum=0.3))
            config = epc_config(inf, spec, beta=0.3, target=target, reuse_sweep=reuse)
            algo = pj.PC(dataclasses.replace(config, **parts), _sgd(1.0), 1)
            return algo.train_step(algo.init(net), x, y)

        (s0, m0), (s1, m1) = step(False), step(True)
        np.testing.assert_allclose(_flat(s1.model), _flat(s0.model), rtol=1e-12, atol=1e-14)
        assert float(jnp.abs(_flat(s0.model) - _flat(net)).max()) > 1e-3
        for k in m0:
            np.testing.assert_allclose(m1[k], m0[k], rtol=1e-11, atol=1e-14, err_msg=k)
    plain = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=4)
    L, xs, ys = plain.num_nodes, jnp.zeros((4, 6)), jnp.zeros((4, 3))
    dots = [_dots_in_relaxation(pj.EPC(pj.Inference(T=3), pj.EnergySpec(), pj.WeightOptim(), 1, reuse_sweep=r),
                                plain, xs, ys) for r in (False, True)]
    assert dots == [4 * L - 4, 2 * L - 1], dots


def test_nudged_epc_equilibrium_preconditions_the_output_error_and_hidden_precision_recovers_backprop():
    """Why ePC's update leaves backprop's direction as a network deepens and trains. With the output held at
    the nudged target t = mu_L - beta (mu_L - y) and hidden terms weighted a (``energy.alpha``), on a linear
    network E(e) = (a/2) ||e||^2 + (1/2) ||r0 + J e||^2 per sample, with r0 = mu_L - t = beta (mu_L - y)
    and J the output's Jacobian in the hidden errors, so the relaxed output residual is exactly

        r* = (I + J J^T / a)^{-1} r0:

    backprop's output error seen through a preconditioner that grows with ||J|| (depth, weight size), not a
    smaller copy of it. As a -> inf the preconditioner goes to I and ePC's weight update / beta to the
    backprop gradient; at a = 1 it is off."""
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (4,), 3, key=jax.random.PRNGKey(0), width=5, depth=3, act="identity"))
        x, y = _data(6, 4, 3)
        L, beta = net.num_nodes, 0.1
        mus = net.feedforward(x)
        t = mus[-1] - beta * (mus[-1] - y)
        zeros = tuple(jnp.zeros_like(m) for m in mus[:-1])

        def output(e):  # mu_L at the swept states z = sweep(e)
            return net.predict(L, (x,) + sweep(net, x, e))

        # J: one sample's output in its own hidden errors (a linear net: the same for every sample)
        jac = jax.jacobian(lambda e: output(e)[0])(zeros)
        J = jnp.concatenate([j[:, 0].reshape(3, -1) for j in jac], axis=1)
        for a in (1.0, 4.0):
            spec = pj.EnergySpec(alpha=(a,) * (L - 1) + (1.0,))
            inf = pj.Inference(T=4000, optim=pj.LatentOptim(lr=0.05))
            errors, _ = inf.run(lambda e, p: pj.network_energy(net, x, sweep(net, x, e) + (t,), spec, precision=p),
                                zeros, free_nodes=tuple(range(L - 1)), num_nodes=L)
            want = jnp.linalg.solve(jnp.eye(3) + J @ J.T / a, (mus[-1] - t).T).T
            np.testing.assert_allclose(output(errors) - t, want, rtol=1e-7, atol=1e-10)

        # the weight update: cos to backprop's gradient rises to 1 with the hidden precision
        g_bp = _flat(eqx.filter_grad(lambda m: pj.get_energy("gaussian")(m(x), y).sum())(net))
        cosines = []
        for a in (1.0, 10.0, 100.0, 1000.0):
            spec = pj.EnergySpec(alpha=(a,) * (L - 1) + (1.0,))
            epc = pj.EPC(pj.Inference(T=3000, optim=pj.LatentOptim(lr=0.5 / a)), spec, _sgd(1.0), 1, beta=beta,
                         target="nudged")
            new, _ = epc.train_step(epc.init(net), x, y)
            g = _flat(net) - _flat(new.model)
            cosines.append(float(g @ g_bp / (jnp.linalg.norm(g) * jnp.linalg.norm(g_bp))))
        assert all(b > a for a, b in zip(cosines, cosines[1:])), cosines
        # measured 1 - cos = 8.7e-3, 1.3e-4, 1.4e-6, 1.4e-8 (falling as 1/a^2) on this 4-block net
        assert 1 - cosines[0] > 5e-3 and 1 - cosines[-1] < 1e-7, cosines
