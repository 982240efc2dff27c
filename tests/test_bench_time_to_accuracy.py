"""The time-to-accuracy benchmark: its bookkeeping, its report, and a short real run.

* ``summarise`` counts epochs and seconds up to the first epoch at the target (None when never
  reached) and ``run_task``'s ratios follow from them;
* the markdown table is generated from a results file;
* on scikit-learn's digits (a task of command-line overrides), pcjax PC and BP through ``fit`` and
  PCX through its own loop train from the same weights on the same batches: PC and PCX, the same
  algorithm, end within a point of each other; a result file is merged and reported;
* PCX's published reduction (``pmean`` inside ``pxf.vmap``) gives 1/B of a sample's own latent
  gradient on this JAX, ``psum`` gives it exactly (why the PCX loop reduces with ``psum``).
No timing assertions.
"""

import json

import numpy as np
import pytest

from benchmarks import time_to_accuracy as tta


def _entry(accs, secs):
    return {"config": "x", "compile_s": 1.0,
            "epochs": [{"epoch": i + 1, "test_acc": a, "seconds": s, "eval_seconds": 0.5} for i, (a, s) in
                       enumerate(zip(accs, secs))]}


def test_summarise_counts_up_to_the_first_epoch_at_the_target():
    s = tta.summarise(_entry([0.5, 0.8, 0.7, 0.9], [2.0, 1.0, 1.0, 1.0]), 0.8)
    assert s["reached"] and s["epochs_to_target"] == 2 and s["seconds_to_target"] == pytest.approx(3.0)
    assert s["wall_seconds_to_target"] == pytest.approx(4.0) and s["best_test_acc"] == 0.9
    assert s["seconds_with_compile"] == pytest.approx(4.0)  # 3 s of training + 1 s of compilation
    assert s["seconds_per_epoch"] == pytest.approx(1.25) and s["epochs_run"] == 4
    never = tta.summarise(_entry([0.5, 0.6], [1.0, 1.0]), 0.8)
    assert not never["reached"] and never["seconds_to_target"] is None and never["best_test_acc"] == 0.6


def test_markdown_from_a_results_file(tmp_path):
    task = {"label": "Digits MLP", "target_acc": 0.8, "competitors": {
        "pcjax_pc": tta.summarise(_entry([0.5, 0.85], [1.0, 1.0]), 0.8),
        "pcx_pc": tta.summarise(_entry([0.5, 0.7, 0.82], [2.0, 2.0, 2.0]), 0.8),
        "pcjax_bp": {"error": "RuntimeError: boom"}},
        "ratio_best_pcjax_vs_pcx": 2.0 / 6.0, "best_pcjax": "pcjax_pc", "ratio_pc_vs_bp": None}
    meta = {"hardware": {"device": "cpu-2core", "device_name": "Some CPU (2 cores)"}, "versions": {}, "command": "c",
            "timestamp": "t"}
    path = tmp_path / "r.json"
    tta.merge_json(path, "digits", task, meta)
    md = tta.write_markdown(path).read_text()
    assert "# Time to accuracy (Some CPU (2 cores))" in md and "target 80.00 %" in md
    assert "| pcjax_pc | x | 2 | 2.0 |" in md and "| pcx_pc | x | 3 | 6.0 |" in md
    assert "**0.33**" in md and "failed: RuntimeError: boom" in md


@pytest.fixture
def digits_task(monkeypatch):
    base = ["dataset=digits", "model=mlp", "model.width=32", "model.depth=2", "trainer.epochs=3", "trainer.batch_size=64",
            "optim.lr=0.002"]
    monkeypatch.setitem(tta.TASKS, "digits_mlp", dict(
        target=0.8, label="digits MLP", configs=dict(pc=base + ["algorithm=pc", "algorithm.T=4"], epc=None,
                                                     pc_fast=base + ["algorithm=pc", "algorithm.T=2",
                                                                     "trainer.epochs=1"],
                                                     bp=base + ["algorithm=bp"])))
    return "digits_mlp"


def test_a_short_real_run(digits_task, tmp_path):
    pytest.importorskip("hydra")
    from benchmarks import pcx_adapter

    only = ("pcjax_pc", "pcjax_pc_fast", "pcjax_bp") + (("pcx_pc",) if pcx_adapter.available() else ())
    res = tta.run_task(digits_task, only=only, max_epochs=2, log=lambda *a: None)
    assert res["target_acc"] == 0.8 and res["max_epochs"] == 2 and res["schedule_epochs"] == 3
    comp = res["competitors"]
    for name in only:
        c = comp[name]
        assert "error" not in c, c
        assert 1 <= c["epochs_run"] <= 2 and c["compile_s"] >= 0 and all(e["seconds"] > 0 for e in c["epochs"])
        assert c["reached"] == (c["best_test_acc"] >= 0.8)
    assert comp["pcjax_pc_fast"]["epochs_run"] == 1  # a fast recipe runs at most its own schedule's epochs
    if "pcx_pc" in comp:
        pc, pcx = comp["pcjax_pc"]["epochs"], comp["pcx_pc"]["epochs"]
        n = min(len(pc), len(pcx))
        assert abs(pc[n - 1]["test_acc"] - pcx[n - 1]["test_acc"]) < 0.01
        if comp["pcjax_pc"]["reached"] and comp["pcx_pc"]["reached"]:
            assert res["ratio_best_pcjax_vs_pcx"] == pytest.approx(
                comp["pcjax_pc"]["seconds_to_target"] / comp["pcx_pc"]["seconds_to_target"])
    meta = {"hardware": {"device": "cpu", "device_name": "cpu"}, "versions": {}, "command": "c", "timestamp": "t"}
    data = tta.merge_json(tmp_path / "r.json", digits_task, res, meta)
    assert json.loads((tmp_path / "r.json").read_text())["tasks"][digits_task]["target_acc"] == data["tasks"][
        digits_task]["target_acc"]


def test_pcx_pmean_gives_one_over_batch_of_the_sample_gradient():
    pytest.importorskip("pcx")
    import jax
    import jax.numpy as jnp
    import pcx.functional as pxf
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    import pcjax as pj
    from benchmarks import pcx_adapter as pa

    B = 6
    net = pj.build_model("mlp", (5,), 3, key=jax.random.PRNGKey(0), width=4, depth=1, act="tanh")
    x = jax.random.normal(jax.random.PRNGKey(1), (B, 5))
    y = jax.nn.one_hot(jnp.arange(B) % 3, 3)
    model = pa.PCXNet(net)
    mask = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))
    fwd = pxf.vmap(mask, in_axes=(0, 0), out_axes=0)(lambda x, y, *, model: model(x, y))
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        fwd(x, y, model=model)
    model.vodes[0].h.set(model.vodes[0].h.get() + 0.1)  # move the free vode off its prediction

    def grad(reduce):
        def energy(x, *, model):
            out = model(x, None)
            return reduce(model.energy(), "batch"), out

        venergy = pxf.vmap(mask, in_axes=(0,), out_axes=(None, 0), axis_name="batch")(energy)
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(
                venergy)(x, model=model)
        return np.asarray(g["model"].vodes[0].h.get())

    z = model.vodes[0].h.get()
    # every sample's own energy gradient (samples are independent: the gradient of the sum)
    own = np.asarray(jax.grad(lambda z: pj.network_energy(net, x, (z, y), pj.EnergySpec())[0].sum())(z))
    np.testing.assert_allclose(grad(jax.lax.psum), own, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad(jax.lax.pmean), own / B, rtol=1e-5, atol=1e-7)
