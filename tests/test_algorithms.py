"""Algorithms as parts: every step is the same with and without jit (chex variants); the registry;
combinations that make no sense fail naming both parts; a plugin algorithm trains from the CLI,
in a ``-m`` sweep and under Optuna; choosing an algorithm chooses its defaults."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import pytest
from conftest import isolated_registries

import pcjax as pj

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.epochs=1", "trainer.progress=false", "model.width=32", "model.depth=2", "trainer.checkpoint=false"]


def _algorithms():
    wopt = pj.WeightOptim(lr=1e-2, schedule="constant")
    lam = pj.EnergySpec(lam=0.1)
    base = pj.PCConfig(T=3, latent=pj.LatentOptim(lr=0.1, momentum=0.5))
    return {
        "pc": pj.PC(base, wopt, 10),
        "pc_soft": pj.PC(dataclasses.replace(base, target=pj.SoftNudge(), beta=0.2), wopt, 10),
        "fu": pj.PC(dataclasses.replace(base, update=pj.ForwardUpdate()), wopt, 10),
        "ipc": pj.PC(dataclasses.replace(base, update=pj.Incremental()), wopt, 10),
        "bpc_contrast": pj.PC(dataclasses.replace(base, energy=lam, update=pj.Contrastive(),
                                                  lalr=pj.make_lalr("error_normalised")), wopt, 10),
        "pc_front": pj.PC(base, wopt, 10, runtime=pj.Runtime(error_front=True, unroll=True)),
        "epc": pj.EPC(base.inference, pj.EnergySpec(), wopt, 10, beta=0.5),
        "epc_soft_fu": pj.PC(dataclasses.replace(base, parameterisation=pj.Errors(reuse_sweep=True),
                                                 target=pj.SoftNudge(), update=pj.ForwardUpdate(), beta=0.2), wopt, 10),
        "pcalm": pj.PCALM(base.inference, pj.EnergySpec(), wopt, 10, rho=2.0, dual_lr=0.5),
        "bp": pj.Backprop(wopt, 10),
    }


class StepVariantsTest(chex.TestCase):
    """Each algorithm's ``train_step`` gives the same state and metrics with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_every_algorithm_step(self):
        """float64, so that the comparison is tight (float32 error norms of nearly relaxed nodes are
        differences of close numbers, which jit's fused arithmetic rounds differently)."""
        with jax.enable_x64(True):
            x = jax.random.normal(jax.random.PRNGKey(1), (8, 6), jnp.float64)
            y = jax.nn.one_hot(jnp.arange(8) % 3, 3, dtype=jnp.float64)
            for name, algo in _algorithms().items():
                net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2,
                                     backward="learned" if name.startswith("bpc") else "none")
                self._check(name, algo, _f64(net), x, y)

    def _check(self, name, algo, net, x, y):
        state = algo.init(net)
        got_state, got = self.variant(algo.train_step)(state, x, y)
        want_state, want = algo.train_step(state, x, y)
        chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-12)
        chex.assert_trees_all_close(eqx_arrays(got_state), eqx_arrays(want_state), rtol=1e-9, atol=1e-12)
        chex.assert_shape(got["loss"], ())
        assert int(got_state.step) == (3 if name == "ipc" else 1), name


def _f64(tree):
    import equinox as eqx

    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def eqx_arrays(tree):
    import equinox as eqx

    return eqx.filter(tree, eqx.is_array)


def test_step_boundary_checks_name_the_shapes():
    algo = _algorithms()["pc"]
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    x, y = jnp.ones((4, 6)), jax.nn.one_hot(jnp.arange(4) % 3, 3)
    with pytest.raises(pj.ShapeError, match=r"targets must be one-hot of shape \(4, 3\)"):
        algo.train_step(algo.init(net), x, y[:, :2])
    with pytest.raises(pj.ShapeError, match=r"inputs must have shape \(B, 6\)"):
        algo.train_step(algo.init(net), jnp.ones((4, 5)), y)


def test_nonsense_combinations_fail_naming_both_parts():
    wopt = pj.WeightOptim()
    with pytest.raises(pj.ConfigError, match="Incremental cannot be combined with target SoftNudge"):
        pj.PC(pj.PCConfig(update=pj.Incremental(), target=pj.SoftNudge()), wopt, 1)
    with pytest.raises(pj.ConfigError, match="SoftNudge.*compute_dtype"):
        pj.PC(pj.PCConfig(target=pj.SoftNudge()), wopt, 1, runtime=pj.Runtime(compute_dtype="bf16"))
    with pytest.raises(pj.ConfigError, match="Contrastive cannot wrap Incremental"):
        pj.Contrastive(pj.Incremental())


def test_registry_lists_builtin_algorithms_and_rejects_unknown_names(monkeypatch):
    assert {"pc", "epc", "bp"} <= set(pj.available_algorithms())
    with pytest.raises(pj.ConfigError, match="valid choices: .*epc"):
        pj.get_algorithm("nope")
    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_algorithm("not_an_algorithm", lambda ctx: object())
        from pcjax.config import Config
        from pcjax.experiment import build, to_dict

        c = to_dict(Config())
        c["algorithm"]["name"] = "not_an_algorithm"
        with pytest.raises(pj.ConfigError, match="not a pcjax Algorithm"):
            build(c, 2, (8, 8, 1), 10)
        with pytest.raises(pj.ConfigError, match="already registered"):
            pj.register_algorithm("not_an_algorithm", lambda ctx: None)
    assert "not_an_algorithm" not in pj.available_algorithms()


def _run(args, cwd):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_plugin_algorithm_trains_from_the_cli_in_a_sweep_and_under_optuna(tmp_path):
    plugin = f"plugins=[{ROOT / 'examples' / 'every_k.py'}]"
    _run(["-m", plugin, "algorithm=pc_every_k", "algorithm.params.k=1,4", *FAST], tmp_path)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("record.json")]
    assert sorted(r["config"]["algorithm"]["params"]["k"] for r in recs) == [1, 4]
    for r in recs:
        assert r["algorithm"] == "pc_every_k-se" and len(r["epochs"]) == 1 and r["config"]["energy"]["lam"] == 0.0
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    _run(["-m", plugin, "algorithm=pc_every_k", "algorithm.params.k=1", "+sweep=optuna", "hydra.sweeper.n_trials=2",
          "hydra.sweep.dir=optuna", *FAST], tmp_path)
    assert len(list((tmp_path / "optuna").rglob("record.json"))) == 2


def test_choosing_an_algorithm_chooses_its_defaults():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pcjax.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        def cfg(*overrides):
            return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)

        default = cfg()
        assert (default["algorithm"]["name"], default["energy"]["lam"], default["lalr"]["rule"]) == (
            "pc", 0.1, "error_normalised")
        for name in ("pc", "epc", "bp", "ipc", "fu"):
            c = cfg(f"algorithm={name}")
            assert (c["energy"]["lam"], c["lalr"]["rule"]) == (0.0, "constant"), name
        c = cfg("algorithm=pc", "energy=bidirectional", "lalr=geometric")  # explicit choices win
        assert (c["energy"]["lam"], c["lalr"]["rule"]) == (0.1, "geometric")
        c = cfg("algorithm=bp", "energy=ce")  # BP's loss follows the output energy
        from pcjax.experiment import algorithm_label, build

        assert algorithm_label(c) == "bp-ce" and build(c, 2, (8, 8, 1), 10)[1].loss == "cross_entropy"
