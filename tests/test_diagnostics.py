"""Depth diagnostics: the update direction read off one SGD(1) step equals the algorithm's gradient."""

import jax
import jax.numpy as jnp
import numpy as np

import pcjax as pj
from pcjax.diagnostics import layer_diagnostics


def _setup():
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=3, act="tanh")
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 6))
    y = jax.nn.one_hot(jnp.arange(16) % 3, 3)
    return net, x, y


def test_backprop_diagnostics_are_exactly_backprop():
    net, x, y = _setup()
    bp = pj.Backprop(pj.WeightOptim(lr=1e-3), 10)
    d = layer_diagnostics(bp, bp.init(net), x, y)
    np.testing.assert_allclose(d["cosine_bp"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(d["update_norm"], d["bp_grad_norm"], rtol=1e-5)
    assert len(d["cosine_bp"]) == net.num_nodes


def test_soft_nudged_epc_aligns_with_backprop_and_state_pc_decays_with_depth():
    net, x, y = _setup()
    epc = pj.EPC(pj.Inference(T=200, optim=pj.LatentOptim(lr=0.2, momentum=0.5)), pj.EnergySpec(),
                 pj.WeightOptim(lr=1e-3), 10, beta=0.01)
    d = layer_diagnostics(epc, epc.init(net), x, y)
    assert min(d["cosine_bp"]) > 0.99, d["cosine_bp"]
    pc = pj.PC(pj.PCConfig(T=1, latent=pj.LatentOptim(lr=0.1)), pj.WeightOptim(lr=1e-3), 10)
    d = layer_diagnostics(pc, pc.init(net), x, y)
    # one inference step: only the top two blocks have an error to learn from
    assert d["update_norm"][0] == 0.0 and d["update_norm"][1] == 0.0 and d["update_norm"][-1] > 0
    assert np.asarray(d["layer_energy"]).shape == (2, net.num_nodes)


def test_fit_records_custom_metrics_and_per_epoch_diagnostics(tmp_path):
    from pcjax.data import load_dataset
    from pcjax.training import TrainerConfig, fit

    class WithMetric(pj.PC):
        """PC that also reports the mean output activation (a custom metric)."""

        def train_step(self, state, x, y):
            new, metrics = super().train_step(state, x, y)
            return new, dict(metrics, out_mean=jnp.mean(state.model(x)))

    data = load_dataset("digits", limit_train=256)
    net = pj.build_model("mlp", data.image_shape, 10, key=jax.random.PRNGKey(0), width=16, depth=2)
    algo = WithMetric(pj.PCConfig(T=3, latent=pj.LatentOptim(lr=0.1)), pj.WeightOptim(lr=1e-3), 12)
    logged = []

    class Tracker:
        def start(self, config, run_dir): ...
        def log(self, metrics, step): logged.append(metrics)
        def finish(self, status): ...

    _, record = fit(algo, net, data, TrainerConfig(epochs=2, batch_size=32, progress=False, diagnostics=True,
                                                   run_dir=str(tmp_path)), tracker=Tracker())
    for entry, log in zip(record["epochs"], logged):
        assert np.isfinite(entry["train_out_mean"]) and log["train_out_mean"] == entry["train_out_mean"]
        d = entry["diagnostics"]
        assert len(d["cosine_bp"]) == net.num_nodes and np.asarray(d["layer_energy"]).shape == (4, net.num_nodes)
