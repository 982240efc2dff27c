"""ePC against the plain-JAX calibration script (``../shared/tools/calibrate_deep_pc.py``): real answers.

The script's ePC and pcjax's differ in one place of the step's maths, where beta places the label
(``EPC(target=...)``): the script relaxes E = sum 0.5||e||^2 + 0.5||y_t - out||^2 toward the nudged
output y_t = out0 + beta (y - out0) and steps along (1/beta) dE/dW at (z, y_t) (``target="nudged"``);
pcjax's default relaxes E = sum 0.5||e||^2 + beta 0.5||y - out||^2 and steps along (1/beta) dE/dW at
(z, y) (``target="weighted"``). Checked here in float64 on a small muPC residual MLP:

* each target reproduces, to 1e-10, the weight gradient that the script's maths (written out below
  the way the script writes it, with pcjax's multipliers) gives for that target;
* the two targets are the same algorithm at beta = 1, and after one relaxation step they agree on
  every block but the readout (same first error step; only the output term's gradient differs);
* at beta = 0.1 after a full relaxation they differ (the difference the calibration measures);
* an unknown target fails at construction.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj

D, N, C, H, B = 12, 16, 5, 6, 8  # input, width, classes, hidden nodes (= model depth), batch


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _net():
    return _f64(pj.build_model("mlp", (D,), C, key=jax.random.PRNGKey(0), width=N, depth=H, act="relu",
                               residual=True, init="mup", preact=True))


def _data():
    x = jax.random.normal(jax.random.PRNGKey(1), (B, D), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (B,), 0, C), C).astype(jnp.float64)
    return x, y


def _pcjax_grads(net, x, y, *, target, beta, T, lr=0.3):
    """(1/beta) dE/dW of one pcjax ePC step, read off an SGD step of rate 1, as {in, h, out} arrays."""
    algo = pj.EPC(pj.Inference(T=T, optim=pj.LatentOptim(lr=lr)), pj.EnergySpec(),
                  pj.WeightOptim(name="sgd", lr=1.0, momentum=0.0, schedule="constant"), 1, beta=beta, target=target)
    new, _ = algo.train_step(algo.init(net), x, y)
    return {k: a - b for (k, a), (_, b) in zip(_weights(net).items(), _weights(new.model).items())}


def _weights(net):
    b = net.blocks
    return {"in": b[0].weight, "h": jnp.stack([b[i].layers[1].weight for i in range(1, H)]),
            "out": b[H].layers[1].weight}


def _script_grads(net, x, y, *, target, beta, T, lr=0.3):
    """The calibration script's ePC weight gradient (its functions, with pcjax's multipliers a_l)."""
    W = _weights(net)
    a_in, a_h, a_out = net.blocks[0].scale, net.blocks[1].layers[1].scale, net.blocks[H].layers[1].scale

    def f(W, l, h):
        return a_in * h @ W["in"] if l == 1 else h + a_h * jax.nn.relu(h) @ W["h"][l - 2]

    def readout(W, h):
        return a_out * jax.nn.relu(h) @ W["out"]

    def states(W, es):
        hs, h = [], x
        for l in range(1, H + 1):
            h = f(W, l, h) + es[l - 1]
            hs.append(h)
        return tuple(hs)

    def pc_energy(W, hs, goal, w_out):
        e, prev = 0.0, x
        for l in range(1, H + 1):
            e += 0.5 * jnp.sum((hs[l - 1] - f(W, l, prev)) ** 2)
            prev = hs[l - 1]
        return (e + w_out * 0.5 * jnp.sum((goal - readout(W, prev)) ** 2)) / B

    if target == "nudged":
        out = readout(W, states(W, (jnp.zeros((B, N)),) * H)[-1])
        goal, w_out = out + beta * (y - out), 1.0
    else:
        goal, w_out = y, beta

    def E(es):
        return 0.5 * sum(jnp.sum(e ** 2) for e in es) + w_out * 0.5 * jnp.sum((goal - readout(W, states(W, es)[-1])) ** 2)

    es = tuple(jnp.zeros((B, N), jnp.float64) for _ in range(H))
    for _ in range(T):
        es = tuple(e - lr * g for e, g in zip(es, jax.grad(E)(es)))
    g = jax.grad(pc_energy)(W, states(W, es), goal, w_out)
    return {k: v / beta for k, v in g.items()}


@pytest.mark.parametrize("target", ["nudged", "weighted"])
def test_each_target_reproduces_the_script_maths(target):
    with jax.enable_x64(True):
        net, (x, y) = _net(), _data()
        # beta 0.125: exact in float32, the dtype the training state keeps beta in
        got = _pcjax_grads(net, x, y, target=target, beta=0.125, T=16)
        want = _script_grads(net, x, y, target=target, beta=0.125, T=16)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def _both_targets(net, x, y, *, beta, T):
    """pcjax's weight gradients with the nudged and with the weighted target."""
    return tuple(_pcjax_grads(net, x, y, target=t, beta=beta, T=T) for t in ("nudged", "weighted"))


def test_targets_agree_at_beta_one_and_after_one_step_except_the_readout():
    with jax.enable_x64(True):
        net, (x, y) = _net(), _data()
        a, b = _both_targets(net, x, y, beta=1.0, T=16)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-14, err_msg=k)
        a, b = _both_targets(net, x, y, beta=0.1, T=1)
        for k in ("in", "h"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-14, err_msg=k)
        assert float(jnp.linalg.norm(a["out"] - b["out"]) / jnp.linalg.norm(b["out"])) > 1e-3


def test_targets_differ_after_a_full_relaxation_at_small_beta():
    with jax.enable_x64(True):
        net, (x, y) = _net(), _data()
        a, b = _both_targets(net, x, y, beta=0.1, T=32)
        for k in a:
            assert float(jnp.linalg.norm(a[k] - b[k]) / jnp.linalg.norm(b[k])) > 1e-3, k


def test_unknown_target_fails():
    with pytest.raises(pj.ConfigError, match="target"):
        pj.EPC(pj.Inference(), pj.EnergySpec(), pj.WeightOptim(), 1, target="clamp")


def _built(algorithm: str, **params):
    """The algorithm ``build`` makes from the tiny config with ``algorithm.name`` and ``algorithm.params``."""
    from dataclasses import asdict

    from conftest import tiny_config
    from pcjax.experiment import build

    c = asdict(tiny_config())
    c["algorithm"]["name"], c["algorithm"]["params"] = algorithm, dict(params)
    return build(c, 4, (8, 8, 1), 10)[1]


def test_config_chooses_the_target():
    assert _built("epc").target == "weighted"
    assert _built("epc", target="nudged").target == "nudged"
    with pytest.raises(pj.ConfigError, match="target must be one of"):
        _built("epc", target="clamp")


@pytest.mark.parametrize("algorithm", ["pc", "epc", "bp"])
def test_builtin_algorithms_refuse_parameters_they_do_not_take(algorithm):
    with pytest.raises(pj.ConfigError, match=r"algorithm.params \['tauu'\] are not parameters"):
        _built(algorithm, tauu=1)
