"""Extension points: plugins, a new energy term, block + top-down predictor, LALR rule, algorithm variant.

Every extension lives in ``examples/`` and is used without editing pcjax: registered by a plugin
module and selected by name from the run configuration, or (the algorithm variant) subclassed.
"""

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import isolated_registries

import pcjax as pj
from pcjax import energies, lalr, models
from pcjax.config import Config
from pcjax.plugins import load_plugin, load_plugins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """Run each test from the repository root and undo its registrations and imports afterwards."""
    with isolated_registries(monkeypatch, root_on_path=False):
        yield


def _example(name):
    return load_plugin(f"examples/{name}.py")


# --------------------------------------------------------------------------------- plugins
def test_plugin_by_path_and_by_module_name_is_one_module():
    by_path = load_plugin("examples/huber_energy.py")
    by_name = load_plugin("examples.huber_energy")
    assert by_path is by_name and by_path.__name__ == "examples.huber_energy"
    assert {"huber", "cauchy"} <= set(pj.available_energies())
    assert load_plugins(["examples/huber_energy.py", "examples.huber_energy"]) == [by_path, by_path]
    assert load_plugins(None) == [] and load_plugins([]) == []


def test_plugin_file_outside_the_path_is_loaded_once(tmp_path):
    plugin = tmp_path / "my-plugin.py"
    plugin.write_text(
        "import pcjax as pj\nCALLS = []\nCALLS.append(1)\n"
        "pj.register_energy('abs_err', lambda p, v: abs(v - p).sum(axis=-1))\n"
    )
    first = load_plugin(str(plugin))
    second = load_plugin(str(plugin))
    assert first is second and first.CALLS == [1]
    assert pj.get_energy("abs_err")(jnp.zeros((2, 3)), jnp.ones((2, 3))).tolist() == [3.0, 3.0]


def test_plugin_errors_are_clear(tmp_path):
    with pytest.raises(pj.ConfigError, match="not found"):
        load_plugin("examples/no_such_file.py")
    with pytest.raises(pj.ConfigError, match="module 'no_such_plugin_module' not found"):
        load_plugin("no_such_plugin_module")
    broken = tmp_path / "broken.py"
    broken.write_text("import a_module_that_does_not_exist_xyz\n")
    with pytest.raises(pj.ConfigError, match="a_module_that_does_not_exist_xyz") as err:
        load_plugin(str(broken))  # the file, the line and the fix (tests/test_bad_inputs.py)
    assert isinstance(err.value.__cause__, ModuleNotFoundError)


def test_run_experiment_loads_plugins_and_uses_them_by_name(tmp_path):
    cfg = Config()
    cfg.plugins = ["examples/huber_energy.py", "examples.topdown_block", "examples/energy_lalr.py"]
    cfg.dataset.limit_train, cfg.dataset.limit_test = 256, 100
    cfg.model.name, cfg.model.width, cfg.model.depth = "affine_td", 32, 2
    cfg.energy.hidden, cfg.energy.lam = "huber", 0.1
    cfg.lalr.rule, cfg.lalr.params = "energy_share", {"power": 0.5}
    cfg.algorithm.T = 4
    cfg.trainer.epochs, cfg.trainer.batch_size = 1, 64
    cfg.trainer.progress, cfg.trainer.checkpoint = False, False
    cfg.tracking.backends = []
    record = pj_run(cfg, tmp_path)
    assert record["status"] == "complete" and record["model"] == "affine_td"
    assert "energy_share" in record["algorithm"]
    assert 0.0 <= record["summary"]["test_acc"] <= 1.0


def pj_run(cfg, run_dir):
    from pcjax.experiment import run_experiment

    return run_experiment(cfg, run_dir=run_dir)


# ------------------------------------------------------------------------------ energies
def test_huber_and_cauchy_energies():
    mod = _example("huber_energy")
    huber, cauchy, gaussian = (pj.get_energy(n) for n in ("huber", "cauchy", "gaussian"))
    assert huber is mod.huber and cauchy is mod.cauchy
    pred = jnp.zeros((2, 3))
    value = jnp.array([[0.01, -0.02, 0.03], [3.0, -5.0, 0.0]])
    np.testing.assert_allclose(huber(pred, value), [0.5 * 14e-4, 0.05 * (3 - 0.025) + 0.05 * (5 - 0.025)], rtol=1e-5)
    np.testing.assert_allclose(cauchy(pred, value), 0.5 * 0.05**2 * jnp.log1p((value / 0.05) ** 2).sum(-1), rtol=1e-5)
    small = 1e-4 * value
    np.testing.assert_allclose(huber(pred, small), gaussian(pred, small), rtol=1e-5)
    np.testing.assert_allclose(cauchy(pred, small), gaussian(pred, small), rtol=1e-4)
    # robust: the force on a latent is bounded by delta however large the error
    force = jax.grad(lambda v: huber(pred, v).sum())(100.0 * value)
    assert float(jnp.abs(force).max()) <= 0.05 + 1e-6
    np.testing.assert_allclose(mod.huber(pred, value, delta=1.0)[1], 2.5 + 4.5, rtol=1e-6)
    with pytest.raises(ValueError, match="already registered"):
        pj.register_energy("huber", lambda p, v: p)
    # energy.params binds the scale to the terms that accept it
    spec = pj.EnergySpec(hidden="huber", params={"delta": 1.0})
    np.testing.assert_allclose(spec.term("hidden")(pred, value)[1], 2.5 + 4.5, rtol=1e-6)
    assert spec.term("output") is gaussian
    with pytest.raises(pj.ConfigError, match=r"energy.params \['scale'\] are not parameters"):
        pj.EnergySpec(hidden="huber", params={"scale": 1.0})


# ------------------------------------------------------------------ block + top-down
def test_block_with_its_own_top_down_predictor():
    mod = _example("topdown_block")
    net = pj.build_model("affine_td", (4, 4, 1), 5, key=jax.random.PRNGKey(0), width=8, depth=2)
    assert net.backward_nodes == (1, 2)
    for l, g in zip(net.backward_nodes, net.backward):
        assert isinstance(g, mod.TopDown)
        np.testing.assert_array_equal(g.v, net.blocks[l].w.T)  # tied at initialisation
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 4, 1))
    y = jax.nn.one_hot(jnp.array([0, 1, 2]), 5)
    algo = pj.PC(pj.PCConfig(T=3, energy=pj.EnergySpec(lam=0.2)), pj.WeightOptim(lr=1e-2, schedule="constant"), 4)
    state, metrics = algo.jit_train_step(algo.init(net), x, y)
    assert bool(jnp.isfinite(metrics["energy"]))
    g0, g1 = net.backward[0], state.model.backward[0]
    assert not np.allclose(g0.v, g1.v)  # the predictor is trained by the top-down energy...
    assert not np.allclose(g1.v, state.model.blocks[1].w.T)  # ...separately from the forward weights
    tied = pj.build_model("affine_td", (4, 4, 1), 5, key=jax.random.PRNGKey(0), width=8, depth=2, backward="tied")
    values = (x,) + tied.feedforward(x)
    for a, b in zip(tied.top_down(values), net.top_down(values)):  # Tied uses block.linear: same at init
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- LALR
def test_energy_share_rule():
    mod = _example("energy_lalr")
    rule = pj.make_lalr("energy_share", power=1.0, eps=0.0, max_scale=100.0)
    assert isinstance(rule, mod.EnergyShare)
    norms = jnp.array([0.0, 1.0, 2.0, 1.0])  # energies 0, .5, 2, .5; mean 0.75
    s = rule.scales(jnp.asarray(0), norms, 8)
    np.testing.assert_allclose(s.step, jnp.array([0.5, 2.0, 0.5, 0.5]) / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(s.precision, jnp.ones(4))
    flat = pj.make_lalr("energy_share", power=0.0).scales(jnp.asarray(0), norms, 8)
    np.testing.assert_allclose(flat.step, jnp.ones(4))
    with pytest.raises(pj.ConfigError, match="energy_share"):
        pj.make_lalr("energy_share", nope=1)


# -------------------------------------------------------------------- algorithm variant
def _every_k_setup():
    mod = _example("every_k")
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    y = jax.nn.one_hot(jnp.array([0, 1, 2, 0, 1]), 3)
    return mod, net, x, y


def test_every_k_with_k_equal_T_is_standard_pc():
    mod, net, x, y = _every_k_setup()
    cfg = pj.PCConfig(T=4, latent=pj.LatentOptim(lr=0.1, momentum=0.5), energy=pj.EnergySpec(lam=0.0))
    opt = pj.WeightOptim(name="sgd", lr=0.1, momentum=0.0, schedule="constant")
    pc, ek = pj.PC(cfg, opt, 10), pj.PC(dataclasses.replace(cfg, update=mod.EveryK(4)), opt, 10)
    s1, m1 = pc.jit_train_step(pc.init(net), x, y)
    s2, m2 = ek.jit_train_step(ek.init(net), x, y)
    for a, b in zip(jax.tree_util.tree_leaves(s1.model), jax.tree_util.tree_leaves(s2.model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert set(m1) == set(m2)
    for key in m1:
        np.testing.assert_allclose(m1[key], m2[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_every_k_updates_weights_T_over_k_times():
    mod, net, x, y = _every_k_setup()
    cfg = pj.PCConfig(T=4, latent=pj.LatentOptim(lr=0.1))
    algo = pj.PC(dataclasses.replace(cfg, update=mod.EveryK(2)), pj.WeightOptim(lr=1e-2, schedule="constant"), 10)
    assert algo.total_updates == 20
    state, metrics = algo.jit_train_step(algo.init(net), x, y)
    assert int(state.step) == 2 and metrics["layer_energy"].shape == (5, net.num_nodes)
    with pytest.raises(pj.ConfigError, match="divisor"):
        pj.PC(dataclasses.replace(cfg, update=mod.EveryK(3)), pj.WeightOptim(), 10).init(net)


def test_any_equinox_module_is_a_block():
    import equinox as eqx

    class Square(eqx.Module):
        def __call__(self, x):
            return x**2

    net = pj.Network([pj.Dense(3, 4, key=jax.random.PRNGKey(0)), Square()], (3,))
    assert net.node_shapes == ((4,), (4,))
    assert net(jnp.ones((2, 3))).shape == (2, 4)
