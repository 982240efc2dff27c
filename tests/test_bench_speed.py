"""The speed benchmark runs end to end, and pcjax's speed options compute what the default path does.

* ``benchmarks.speed.main`` on a tiny MLP prints one JSON object with the documented keys;
* ``PCConfig(error_front=True)`` (with and without unrolling) gives the same training step as the
  default scanned full steps, in float64 (so that equality is tight): chain MLP, residual MLP deeper
  than T (front never reaches the bottom; weight update restricted too), VGG with its long skip,
  ResNet blocks with projections, the forward-update variant, an LALR rule and Adam latents;
* ``compute_dtype="bfloat16"`` keeps float32 latents and energies and stays close to float32;
* the PCX adapter computes the same energies and relaxed latents as pcjax (when pcx is installed).
No timing assertions.
"""

import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.error_front import error_front_schedule, error_front_terms
from pcjax.network_energy import partial_energy
from pcjax.inference import ActiveSet, relax
from pcjax.lalr import ErrorNormalised

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root
from benchmarks import speed  # noqa: E402


def test_speed_cli_prints_json_with_the_documented_keys(capsys):
    result = speed.main(["--workload", "tiny", "--T", "2", "--batch", "4", "--repeats", "2", "--quiet"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(line)
    for key in speed.RESULT_KEYS:
        assert key in printed, key
    assert printed["workload"] == "tiny" and printed["T"] == 2 and printed["batch"] == 4
    assert printed["pcjax_pc_step_s"] > 0 and printed["pcjax_bp_step_s"] > 0
    assert printed["pc_over_bp"] == pytest.approx(printed["pcjax_pc_step_s"] / printed["pcjax_bp_step_s"])
    assert len(printed["samples_s"]["pcjax_pc"]) == 2
    for peer, module in (("torch_pc", "torch"), ("pcx_pc", "pcx")):
        try:
            __import__(module)
        except ImportError:
            assert printed[f"{peer}_step_s"] is None
    assert result["device"] == printed["device"]


def test_speed_cli_appends_to_a_results_file(tmp_path):
    out = tmp_path / "res.json"
    args = ["--workload", "tiny", "--T", "1", "--batch", "4", "--repeats", "2", "--quiet", "--only",
            "pcjax_pc,pcjax_bp", "--variants", "plain", "--json", str(out)]
    speed.main(args)
    speed.main(args)
    data = json.loads(out.read_text())
    assert data["hardware"]["device"].startswith(("cpu", "gpu", "tpu"))
    assert len(data["runs"]) == 2 and data["runs"][0]["pcjax_pc_plain_step_s"] > 0


# ----------------------------------------------------------------------------------- error front
def test_error_front_schedule_chain_and_skips():
    sched = error_front_schedule(5, (), 7)
    assert sched == (ActiveSet((5,), (3,)), ActiveSet((4, 5), (2, 3)), ActiveSet((3, 4, 5), (1, 2, 3)),
                     ActiveSet((2, 3, 4, 5), (0, 1, 2, 3)))
    assert error_front_terms(5, (), 7) is None
    assert error_front_terms(10, (), 3) == (7, 8, 9, 10)
    # a skip edge 1 -> 3 lets the front jump: node 1 feeds node 3 directly
    sched = error_front_schedule(4, ((1, 3),), 5)
    assert sched[0] == ActiveSet((4,), (2,)) and sched[1] == ActiveSet((3, 4), (0, 1, 2))


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _cases():
    from pcjax.models.resnet import resnet

    key = jax.random.PRNGKey(0)
    return {
        "mlp": (pj.build_model("mlp", (10,), 4, key=key, width=12, depth=3), (10,)),
        "deep_resmlp": (pj.build_model("mlp", (10,), 4, key=key, width=8, depth=9, act="relu", residual=True,
                                       init="mup"), (10,)),
        "vgg5_longskip": (pj.build_model("vgg5", (16, 16, 3), 4, key=key, width_multiplier=1 / 32, skip="long"),
                          (16, 16, 3)),
        "resnet": (resnet((8, 8, 3), 4, stages=(1, 1), width_multiplier=1 / 16, key=key), (8, 8, 3)),
    }


CASES = _cases()
CONFIGS = {
    "pc": dict(),
    "fu_lalr": dict(update=pj.ForwardUpdate(), lalr=ErrorNormalised()),
}


def _two_steps(net, shape, cfg_kw, **opts):
    kw = {"latent": pj.LatentOptim(lr=0.1, momentum=0.6), **cfg_kw}
    algo = pj.PC(pj.PCConfig(T=5, **kw), pj.WeightOptim(lr=1e-3, weight_decay=1e-2), 50, runtime=pj.Runtime(**opts))
    state = algo.init(net)
    for i in range(2):
        x = jax.random.normal(jax.random.PRNGKey(10 + i), (5,) + shape, jnp.float64)
        y = jax.nn.one_hot(jnp.arange(5) % 4, 4, dtype=jnp.float64)
        state, metrics = algo.jit_train_step(state, x, y)
    return state, metrics


@pytest.mark.parametrize("case,config", [(c, "pc") for c in sorted(CASES)]
                         + [("mlp", "fu_lalr"), ("deep_resmlp", "fu_lalr")])
def test_error_front_equals_full_steps(case, config):
    net, shape = CASES[case]
    tol = dict(rtol=1e-9, atol=1e-12)
    with jax.enable_x64(True):
        net = _f64(net)
        ref_state, ref_metrics = _two_steps(net, shape, CONFIGS[config])
        for opts in (dict(error_front=True), dict(error_front=True, unroll=True)):
            state, metrics = _two_steps(net, shape, CONFIGS[config], **opts)
            for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_array)),
                            jax.tree_util.tree_leaves(eqx.filter(ref_state.model, eqx.is_array))):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
            for k in ref_metrics:
                np.testing.assert_allclose(np.asarray(metrics[k]), np.asarray(ref_metrics[k]), err_msg=k, **tol)


def _relax_both(optim, T):
    net, shape = CASES["vgg5_longskip"]
    net = _f64(net)
    x = jax.random.normal(jax.random.PRNGKey(3), (4,) + shape, jnp.float64)
    y = jax.nn.one_hot(jnp.arange(4) % 4, 4, dtype=jnp.float64)
    mus = net.feedforward(x)
    spec, L = pj.EnergySpec(), net.num_nodes

    def energy_fn(free, precision, nodes=None):
        if nodes is None:
            return pj.network_energy(net, x, free + (y,), spec, precision=precision)
        return partial_energy(net, x, free + (y,), spec, nodes, precision=precision)

    kw = dict(T=T, optim=optim, free_nodes=tuple(range(L - 1)), num_nodes=L)
    sched = error_front_schedule(L, net.skip_edges, T)
    full = jax.jit(lambda m: relax(energy_fn, m, **kw))(mus[:-1])
    front = jax.jit(lambda m: relax(energy_fn, m, schedule=sched, **kw))(mus[:-1])
    return mus, sched, full, front


def test_error_front_relax_equals_full_relax():
    """The relaxed latents themselves (inference only), against the default scan."""
    with jax.enable_x64(True):
        mus, sched, (full, info_full), (front, info_front) = _relax_both(pj.LatentOptim(lr=0.1, momentum=0.5), 6)
        assert 0 < len(sched) < 6
        for a, b in zip(front, full):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(np.asarray(info_front.energy), np.asarray(info_full.energy), rtol=1e-10)
        assert info_front.layer_energy.shape == info_full.layer_energy.shape == (6, len(mus))


def test_error_front_keeps_exact_zeros_with_adam_latents():
    """With Adam latents the error front is the exact computation, the full step is not: Adam divides
    by sqrt(v) + 1e-8, so the full path turns the rounding residue (~1e-16) of the mathematically zero
    errors behind the front into visible latent moves within two steps. The front leaves those
    latents exactly at their feed-forward values."""
    with jax.enable_x64(True):
        mus, sched, (full, _), (front, _) = _relax_both(pj.LatentOptim("adam", lr=0.05), 1)
        assert sched[0].grads == (2, 3)  # node 3 feeds the output through the long skip
        for i in (0, 1):
            assert bool(jnp.all(front[i] == mus[i]))
        for i in (2, 3):
            np.testing.assert_allclose(np.asarray(front[i]), np.asarray(full[i]), rtol=1e-10, atol=1e-13)


def test_partial_energy_with_all_nodes_is_the_energy():
    net, shape = CASES["resnet"]
    x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
    lat = tuple(m + 0.1 for m in net.feedforward(x))
    ref, terms = net.energy(x, lat, pj.EnergySpec())
    got, gterms = partial_energy(net, x, lat, pj.EnergySpec(), None)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.testing.assert_allclose(gterms.error_norm, terms.error_norm, rtol=1e-6)


# ----------------------------------------------------------------------------------------- bf16
def test_bf16_compute_keeps_float32_state_and_is_close():
    net, shape = CASES["resnet"]
    x = jax.random.normal(jax.random.PRNGKey(1), (6,) + shape)
    y = jax.nn.one_hot(jnp.arange(6) % 4, 4)
    out = {}
    for dtype in (None, "bf16"):
        algo = pj.PC(pj.PCConfig(T=4, latent=pj.LatentOptim(lr=0.05, momentum=0.5)), pj.WeightOptim(), 10,
                     runtime=pj.Runtime(error_front=True, compute_dtype=dtype))
        state, metrics = algo.jit_train_step(algo.init(net), x, y)
        for leaf in jax.tree_util.tree_leaves(eqx.filter(state, eqx.is_inexact_array)):
            assert leaf.dtype == jnp.float32
        assert metrics["energy"].dtype == jnp.float32 and bool(jnp.isfinite(metrics["energy"]))
        out[dtype] = metrics
    np.testing.assert_allclose(out["bf16"]["energy"], out[None]["energy"], rtol=5e-2)
    bp = pj.Backprop(pj.WeightOptim(), 10, runtime=pj.Runtime(compute_dtype="bfloat16"))
    state, metrics = bp.jit_train_step(bp.init(net), x, y)
    assert metrics["loss"].dtype == jnp.float32 and bool(jnp.isfinite(metrics["loss"]))


def test_bf16_is_rejected_where_not_implemented():
    with pytest.raises(pj.ConfigError, match="Incremental runs in float32"):
        pj.PC(pj.PCConfig(update=pj.Incremental()), pj.WeightOptim(), 10, runtime=pj.Runtime(compute_dtype="bf16"))
    with pytest.raises(pj.ConfigError, match="unknown compute_dtype"):
        pj.Runtime(compute_dtype="int8")


# ------------------------------------------------------------------------------------------- PCX
@pytest.mark.parametrize("case", ["mlp", "resnet"])
def test_pcx_adapter_matches_pcjax(case):
    pytest.importorskip("pcx", reason="pcx is not installed (pip install --no-deps pcx==0.6.3)")
    from benchmarks import pcx_adapter as pa

    net, shape = CASES[case]
    x = jax.random.normal(jax.random.PRNGKey(1), (5,) + shape)
    y = jax.nn.one_hot(jnp.arange(5) % 4, 4)
    latent, wopt, T = pj.LatentOptim(lr=0.05, momentum=0.5), pj.WeightOptim(lr=1e-3), 4
    runner = pa.PCXRunner(net, T=T, latent_lr=latent.lr, latent_momentum=latent.momentum, weight_optim=wopt,
                          total_steps=10, batch_size=5)
    for a, b in zip(runner.feedforward(x), net.feedforward(x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    lat = tuple(m + 0.05 * jnp.sin(m) for m in net.feedforward(x)[:-1])
    np.testing.assert_allclose(runner.energy(x, y, lat), net.energy(x, lat + (y,), pj.EnergySpec())[0].mean(),
                               rtol=1e-5)
    algo = pj.PC(pj.PCConfig(T=T, latent=latent), wopt, 10)
    _, metrics = algo.jit_train_step(algo.init(net), x, y)
    energy = runner.train_step(runner.prepare(x), y)
    np.testing.assert_allclose(energy, metrics["energy"], rtol=1e-4)
    L = net.num_nodes
    free, _ = relax(lambda f, p: pj.network_energy(net, x, f + (y,), pj.EnergySpec(), precision=p), net.feedforward(x)[:-1],
                    T=T, optim=latent, free_nodes=tuple(range(L - 1)), num_nodes=L)
    for a, b in zip(runner.latents(), free):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_cpu_loops_benchmark_runs():
    from benchmarks.cpu_loops import measure

    r = measure(width=0.125, T=2, batch=4, repeats=1, K=2)
    for key in ("step_plain_s", "step_unroll_s", "step_auto_s", "epoch_scan_s"):
        assert r[key] > 0
    assert r["scan_over_step"] > 0 and r["plain_over_auto"] > 0


def test_epc_fusion_benchmark_runs_and_writes_its_table(tmp_path):
    from benchmarks.epc_fusion import main

    out = tmp_path / "fusion.md"
    assert main(["--depths", "8", "--T", "1", "--batch", "4", "--repeats", "1", "--md", str(out)]) == 0
    table = out.read_text()
    assert "| 8 |" in table and "--depths 8" in table and "cores" in table
