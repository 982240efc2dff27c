"""Inference that stops when it has converged (``relax(..., tol=...)``, ``Inference(tol=...)``).

* ``tol=0`` never triggers and computes what the fixed-T scan computes (float64): bit-exact for the
  while-loop, to rounding for the unrolled cond-guarded steps, with and without the error front's
  schedule, and for a whole PC training step;
* on a quadratic problem the loop stops at the step a closed-form replay of the test predicts, for
  both tests (relative energy change, largest RMS latent update), eagerly and under ``jax.jit``,
  and not before ``min_steps``;
* the trace keeps T rows, the rows after the last step repeating it;
* a bad tolerance fails at construction. No timing assertions.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.error_front import error_front_schedule
from pcjax.inference import relax
from pcjax.network_energy import partial_energy


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _problem(seed=0, depth=3, width=8, batch=5):
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(seed), width=width, depth=depth, act="gelu")
    net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, net)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, 6), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(batch) % 3, 3, dtype=jnp.float64)
    spec = pj.EnergySpec()

    def efn(free, precision, terms=None):
        if terms is None:
            return pj.network_energy(net, x, free + (y,), spec, precision=precision)
        return partial_energy(net, x, free + (y,), spec, terms, precision=precision)

    return net, x, y, efn


def _assert_same(a, b, exact=True):
    """Equal (``exact``), or equal up to float64 rounding (XLA fuses cond-guarded steps differently)."""
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if exact:
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        else:
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("unroll", [1, True])
@pytest.mark.parametrize("front", [False, True])
def test_tol_zero_equals_fixed_T(x64, unroll, front):
    net, x, y, efn = _problem()
    L, T = net.num_nodes, 5
    mus = net.feedforward(x)
    z0 = mus[:-1]
    sched = error_front_schedule(L, net.skip_edges, T) if front else ()
    kw = dict(T=T, optim=pj.LatentOptim(lr=0.1, momentum=0.5), free_nodes=tuple(range(L - 1)), num_nodes=L,
              unroll=unroll, schedule=sched)
    fixed, info_fixed = relax(efn, z0, **kw)
    early, info_early = relax(efn, z0, tol=0.0, **kw)
    exact = unroll is not True  # the while-loop is bit-exact; unrolled cond-guarded steps up to rounding
    _assert_same(fixed, early, exact)
    _assert_same((info_fixed.layer_energy, info_fixed.energy, info_fixed.step_scale),
                 (info_early.layer_energy, info_early.energy, info_early.step_scale), exact)
    assert info_fixed.steps is None and int(info_early.steps) == T
    # the update test at tol=0 never triggers either
    early_u, info_u = relax(efn, z0, tol=0.0, tol_on="update", **kw)
    _assert_same(fixed, early_u, exact)
    assert int(info_u.steps) == T


def _quadratic(c, emin):
    def efn(free, precision):
        (z,) = free
        per_sample = 0.5 * jnp.sum((z - c) ** 2, axis=-1) + emin
        terms = pj.LayerEnergies(forward=(per_sample, jnp.zeros_like(per_sample)),
                                 backward=(jnp.zeros_like(per_sample), jnp.zeros_like(per_sample)),
                                 error_norm=jnp.zeros((2,), per_sample.dtype))
        return per_sample, terms

    return efn


def _replay(z0, c, emin, lr, T, tol, tol_on, min_steps=0):
    """The steps the loop should run: plain SGD z <- z - lr (z - c), the same test after each step."""
    z, prev = np.array(z0, np.float64), np.nan
    for t in range(T):
        e = float(np.mean(0.5 * np.sum((z - c) ** 2, -1) + emin))
        new = z - lr * (z - c)
        if tol_on == "energy":
            done = abs(e - prev) < tol * abs(prev)
        else:
            done = np.sqrt(np.mean((new - z) ** 2)) < tol
        z, prev = new, e
        if done and t + 1 >= min_steps:
            return t + 1, z
    return T, z


@pytest.mark.parametrize("tol_on,tol", [("energy", 1e-4), ("update", 1e-3)])
@pytest.mark.parametrize("jit", [False, True])
def test_stops_early_on_a_converged_quadratic(x64, tol_on, tol, jit):
    rng = np.random.default_rng(0)
    z0, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    emin, lr, T = 0.5, 0.3, 60
    efn = _quadratic(jnp.asarray(c), emin)

    def run(z):
        return relax(efn, (z,), T=T, optim=pj.LatentOptim(lr=lr), free_nodes=(0,), num_nodes=2, tol=tol,
                     tol_on=tol_on)

    (z,), info = (jax.jit(run) if jit else run)(jnp.asarray(z0))
    want_steps, want_z = _replay(z0, c, emin, lr, T, tol, tol_on)
    assert 1 < want_steps < T
    assert int(info.steps) == want_steps
    np.testing.assert_allclose(np.asarray(z), want_z, rtol=1e-12, atol=1e-12)
    # T rows; the rows after the last step repeat it
    assert info.energy.shape == (T,) and info.layer_energy.shape == (T, 2)
    last = want_steps - 1
    np.testing.assert_array_equal(np.asarray(info.energy[last:]), np.full(T - last, float(info.energy[last])))
    assert float(info.energy[last - 1]) > float(info.energy[last])
    # the fixed-T relaxation runs on: the early result stopped short of it
    (z_full,), _ = relax(efn, (jnp.asarray(z0),), T=T, optim=pj.LatentOptim(lr=lr), free_nodes=(0,), num_nodes=2)
    assert float(jnp.max(jnp.abs(z_full - z))) > 0
    # min_steps holds the test back
    later = want_steps + 3
    (z_min,), info_min = jax.jit(lambda z: relax(efn, (z,), T=T, optim=pj.LatentOptim(lr=lr), free_nodes=(0,), num_nodes=2,
                                                 tol=tol, tol_on=tol_on, min_steps=later))(jnp.asarray(z0))
    assert int(info_min.steps) == later == _replay(z0, c, emin, lr, T, tol, tol_on, later)[0]


def test_unrolled_and_while_loop_agree_when_stopping(x64):
    net, x, y, efn = _problem(seed=3)
    L, T = net.num_nodes, 12
    kw = dict(T=T, optim=pj.LatentOptim(lr=0.2, momentum=0.3), free_nodes=tuple(range(L - 1)), num_nodes=L,
              tol=1e-3)
    a, ia = relax(efn, net.feedforward(x)[:-1], unroll=1, **kw)
    b, ib = relax(efn, net.feedforward(x)[:-1], unroll=True, **kw)
    assert 1 < int(ia.steps) < T and int(ia.steps) == int(ib.steps)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


def test_pc_and_epc_steps_with_tolerance(x64):
    net, x, y, _ = _problem(seed=1)
    wopt = pj.WeightOptim(lr=1e-3)
    cfg = pj.PCConfig(T=6, latent=pj.LatentOptim(lr=0.1, momentum=0.5))
    plain = pj.PC(cfg, wopt, 10)
    tolerant = pj.PC(cfg, wopt, 10)
    tolerant.inference = dataclasses.replace(tolerant.inference, tol=0.0)
    s1, m1 = plain.train_step(plain.init(net), x, y)
    s2, m2 = jax.jit(tolerant.train_step)(tolerant.init(net), x, y)
    for u, v in zip(jax.tree_util.tree_leaves((s1, m1)), jax.tree_util.tree_leaves((s2, m2))):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-13, atol=1e-13)
    # ePC takes the tolerance through its Inference part
    inf = pj.Inference(T=20, optim=pj.LatentOptim(lr=0.1, momentum=0.5))
    fixed = pj.EPC(inf, pj.EnergySpec(), wopt, 10)
    early = pj.EPC(dataclasses.replace(inf, tol=1e-2), pj.EnergySpec(), wopt, 10)
    _, mf = jax.jit(fixed.train_step)(fixed.init(net), x, y)
    _, me = jax.jit(early.train_step)(early.init(net), x, y)
    assert np.isfinite(float(me["energy"]))
    np.testing.assert_allclose(float(me["energy"]), float(mf["energy"]), rtol=0.2)


def test_tolerance_is_checked():
    with pytest.raises(pj.ConfigError, match="tol"):
        pj.Inference(T=4, tol=-1.0)
    with pytest.raises(pj.ConfigError, match="tol_on"):
        pj.Inference(T=4, tol=1e-3, tol_on="gradient")
    with pytest.raises(pj.ConfigError, match="min_steps"):
        pj.Inference(T=4, tol=1e-3, min_steps=-1)
    assert pj.Inference(T=4).tol is None


def test_early_stop_benchmark_epoch_reports_the_steps_used():
    """``benchmarks.early_stop``'s compiled epoch returns every batch's inference step count."""
    from benchmarks import early_stop

    net = pj.build_model("mlp", (6, 1, 1), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    tx = jax.random.randint(jax.random.PRNGKey(1), (24, 6, 1, 1), 0, 255).astype(jnp.uint8)
    ty = jnp.arange(24) % 3
    perm = jnp.arange(24).reshape(3, 8)
    steps = {}
    for tol in (None, 0.0, 0.5):
        algo = pj.PC(pj.PCConfig(T=6, latent=pj.LatentOptim(lr=0.1)), pj.WeightOptim(lr=1e-3), 3)
        algo.inference = early_stop.counting_inference(algo.inference, tol=tol)
        epoch = early_stop.make_epoch(algo, tx, ty, jnp.zeros(1), jnp.ones(1), 3)
        _, (energy, used) = epoch(algo.init(net), perm)
        assert used.shape == (3,) and bool(jnp.all(jnp.isfinite(energy)))
        steps[tol] = np.asarray(used)
    assert (steps[None] == 6).all() and (steps[0.0] == 6).all()
    assert (steps[0.5] == 2).all()  # a loose tolerance stops at the first step that can test it
