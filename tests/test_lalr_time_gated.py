"""Qi et al.'s time-gated precision (``lalr=time_gated``): real answers.

* the S schedule activates term l exactly at step L - l (its spike): weight 0 before, 1 at the spike,
  alpha after; node l steps from L - 1 - l (the spike of the term above it); D decays as exp(-k j)
  after the spike, times the official code's constant with ``norm="qi"``;
* gated inference equals an independent re-implementation of the official code's loop (the energy
  of the terms l >= L - t, descended by every free node);
* with alpha = 1 and no gating, the inference equals standard PC bit-exactly;
* with gating, a node keeps its feed-forward value exactly until its step, so the relaxation from
  the feed-forward pass never touches a node the error has not reached.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.diagnostics import layer_diagnostics
from pcjax.lalr import TimeGated
from test_backprop_equivalence import _f64


@pytest.mark.parametrize("L", [1, 4, 7])
def test_spiking_schedule_activates_node_l_exactly_at_step_L_minus_l(L):
    rule = pj.make_lalr("time_gated", mode="S", alpha=0.01)
    for t in range(L + 3):
        sc = rule.scales(jnp.asarray(t), jnp.ones((L,)), L + 3)
        for l in range(1, L + 1):
            spike = L - l
            want_step = 1.0 if t >= spike - 1 else 0.0  # driven first by term l + 1 at its spike
            want_pi = 0.0 if t < spike else (1.0 if t == spike else 0.01)
            assert float(sc.step[l - 1]) == want_step and float(sc.precision[l - 1]) == pytest.approx(want_pi), (t, l)


def test_decaying_schedule():
    L, k = 5, 0.7
    rule = TimeGated(mode="D", k=k)
    for t in range(8):
        pi = np.asarray(rule.scales(jnp.asarray(t), jnp.ones((L,)), 8).precision)
        for l in range(1, L + 1):
            j = t - (L - l)
            assert pi[l - 1] == pytest.approx(0.0 if j < 0 else np.exp(-k * j), rel=1e-6)


def _official_weights(T: int, N: int, mode: str, alpha: float) -> np.ndarray:
    """The official code's ``get_weights_dict`` (DeepPCNs ``model.py``), restated: row i = vode i
    (0-based, vode N - 1 the output), column t = inference step."""
    w = np.zeros((N, T))
    for i in range(N):
        spike = N - i - 1
        if mode == "S":
            w[i] = alpha
        else:
            x = T - spike
            raw = np.exp(-1.0 * np.arange(x))
            w[i, spike:] = raw / 100 * raw.sum()
        if spike < T:
            w[i, spike] = 1.0
    return w


@pytest.mark.parametrize("mode", ["S", "D"])
def test_weights_equal_the_official_schedule_on_the_active_terms(mode):
    """Every term the official loop includes at step t (vodes i >= N - 1 - t) has its weight."""
    L, T = 6, 8
    rule = TimeGated(mode=mode, alpha=0.002, k=1.0, norm="qi")
    want = _official_weights(T, L, mode, 0.002)
    for t in range(T):
        got = np.asarray(rule.scales(jnp.asarray(t), jnp.ones((L,)), T).precision)
        active = np.arange(L) >= L - 1 - t
        np.testing.assert_allclose(got[active], want[active, t], rtol=1e-5)
        assert not got[~active].any()


@pytest.mark.parametrize("mode", ["S", "D"])
def test_gated_inference_equals_the_official_loop(mode):
    """The official loop, re-implemented in plain JAX: at step t the energy is the sum of the terms
    i >= N - 1 - t with their weights (the predictions recomputed from the values below) and every
    free node takes an SGD step on it. pcjax's gated inference gives the same latents."""
    rule = TimeGated(mode=mode, alpha=1e-3, norm="qi")
    T, lr = 3, 0.1  # 4 free nodes: node 1 is not reached in 3 steps
    model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=4)
    algo = pj.PC(pj.PCConfig(T=T, latent=pj.LatentOptim("sgd", lr), lalr=rule), pj.WeightOptim(), 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    y = jax.nn.one_hot(jnp.arange(5) % 3, 3)
    problem = algo.problem(model, x, y, model.feedforward(x), jnp.asarray(1.0))
    L = model.num_nodes
    free, _ = algo.inference.run(problem.energy_fn, problem.init, free_nodes=problem.free_nodes, num_nodes=L)

    w = jnp.asarray(_official_weights(T, L, mode, 1e-3), jnp.float32)
    ref = tuple(model.feedforward(x)[:-1])
    for t in range(T):
        weights = jnp.where(jnp.arange(L) >= L - 1 - t, w[:, t], 0.0)

        def energy(z, weights=weights):
            return pj.network_energy(model, x, (*z, y), algo.config.energy, precision=weights)[0].sum()

        ref = tuple(z - lr * g for z, g in zip(ref, jax.grad(energy)(ref)))
    moved = [bool(jnp.abs(a - b).max() > 0) for a, b in zip(ref, model.feedforward(x)[:-1])]
    assert moved == [False] * (L - 1 - T) + [True] * T  # node l moves from step L - 1 - l on (l >= L - T)
    for a, b in zip(free, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _pc(rule, T=6):
    model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=4)
    algo = pj.PC(pj.PCConfig(T=T, latent=pj.LatentOptim("sgd", 0.1, momentum=0.5), lalr=rule), pj.WeightOptim(), 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    y = jax.nn.one_hot(jnp.arange(5) % 3, 3)
    return model, algo, x, y


def test_ungated_spiking_with_alpha_one_is_standard_pc_bit_exactly():
    model, plain, x, y = _pc(pj.make_lalr("constant"))
    _, qi, _, _ = _pc(TimeGated(mode="S", alpha=1.0, gate=False))
    a, ma = plain.train_step(plain.init(model), x, y)
    b, mb = qi.train_step(qi.init(model), x, y)
    for u, v in zip(jax.tree_util.tree_leaves(a.model), jax.tree_util.tree_leaves(b.model)):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(ma["layer_energy"], mb["layer_energy"])


def test_gated_nodes_keep_their_feedforward_value_until_their_step():
    model, algo, x, y = _pc(TimeGated(mode="S", alpha=1e-3), T=2)
    L = model.num_nodes  # 5 nodes; after 2 steps (t = 0, 1) nodes L - 1 (from t = 0) and L - 2 (t = 1) have stepped
    problem = algo.problem(model, x, y, model.feedforward(x), jnp.asarray(1.0))
    free, _ = algo.inference.run(problem.energy_fn, problem.init, free_nodes=problem.free_nodes, num_nodes=L)
    ff = model.feedforward(x)
    for l in range(1, L - 2):
        np.testing.assert_array_equal(free[l - 1], ff[l - 1])
    for l in (L - 2, L - 1):
        assert float(jnp.abs(free[l - 1] - ff[l - 1]).max()) > 0


def test_invalid_parameters_are_refused():
    for params in ({"mode": "X"}, {"alpha": 2.0}, {"k": -1.0}, {"gate": "yes"}):
        with pytest.raises(pj.ConfigError):
            pj.make_lalr("time_gated", **params)


def test_ungated_decaying_schedule_is_the_peak_normalised_precision_rule():
    """``lalr=precision norm=peak`` (pcjax's earlier schedule) is D without the gating: the same weights, step 1."""
    L, T = 6, 9
    d, p = TimeGated(mode="D", k=0.5, gate=False), pj.make_lalr("precision", k=0.5, norm="peak")
    for t in range(T):
        a, b = d.scales(jnp.asarray(t), jnp.ones((L,)), T), p.scales(jnp.asarray(t), jnp.ones((L,)), T)
        np.testing.assert_allclose(a.precision, b.precision, rtol=1e-6)
        np.testing.assert_array_equal(a.step, b.step)


@pytest.mark.parametrize("model_name", ["mlp", "vgg9_aux"])
def test_spiking_gate_with_forward_update_is_backprop_scaled_per_block(model_name):
    """Closed form: with S gating at alpha = 0, plain latent SGD at rate eta and the forward update,
    node l takes one step driven by e_{l+1} (its value moves by eta^{L-l} delta_l, backprop's adjoint,
    because every node below still holds its feed-forward value), then one step on its own spiking
    term (which takes (1 - eta) of it back), and nothing more. So block l's update is backprop's
    gradient times (1 - eta) eta^{L-l} (1 for the output block), for any nonlinearity: cos 1 at every
    block and those size ratios. On VGG-9 this needs the long skip on auxiliary neurons (a skip edge
    would move node 3 early)."""
    with jax.enable_x64(True):
        eta = 0.7
        key = jax.random.PRNGKey(0)
        if model_name == "mlp":
            model = pj.build_model("mlp", (6,), 3, key=key, width=8, depth=5, act="tanh")
            x = jax.random.normal(jax.random.PRNGKey(1), (5, 6), jnp.float64)
            classes = 3
        else:
            model = pj.build_model("vgg9", (16, 16, 3), 4, key=key, width_multiplier=1 / 16, skip="long",
                                   aux_neurons=True)
            x = jax.random.normal(jax.random.PRNGKey(1), (3, 16, 16, 3), jnp.float64)
            classes = 4
        y = jax.nn.one_hot(jnp.arange(x.shape[0]) % classes, classes, dtype=jnp.float64)
        algo = pj.PC(pj.PCConfig(T=model.num_nodes, latent=pj.LatentOptim("sgd", eta),
                                 lalr=TimeGated(mode="S", alpha=0.0), update=pj.ForwardUpdate()), pj.WeightOptim(), 10)

        def diagnose(model):
            d = layer_diagnostics(algo, algo.init(_f64(model)), x, y)
            return np.asarray(d["cosine_bp"]), np.asarray(d["update_norm"]) / np.asarray(d["bp_grad_norm"])

        L = model.num_nodes
        cos, ratio = diagnose(model)
        np.testing.assert_allclose(cos, 1.0, atol=1e-9)
        want = np.array([(1 - eta) * eta ** (L - l) for l in range(1, L)] + [1.0])
        np.testing.assert_allclose(ratio / ratio[-1], want, rtol=1e-7)
        if model_name != "mlp":  # the skip as an edge: node 3 steps when the skip's term weighs alpha = 0
            cos_edge, _ = diagnose(pj.build_model("vgg9", (16, 16, 3), 4, key=key, width_multiplier=1 / 16,
                                                  skip="long"))
            assert cos_edge[:3].min() < 0.99 and np.allclose(cos_edge[3:], 1.0, atol=1e-9)
