"""One compiled step: no retracing across steps; scan over T equals an unrolled loop."""

import jax
import jax.numpy as jnp
import numpy as np

import pcjax as pj
from pcjax.inference import latent_step, relax
from pcjax.lalr import ErrorNormalised


def _counting(algo):
    calls = {"n": 0}
    step = algo.train_step

    def counted(state, x, y):
        calls["n"] += 1
        return step(state, x, y)

    algo.train_step = counted
    return calls


def _batch(seed):
    x = jax.random.normal(jax.random.PRNGKey(seed), (8, 6))
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(seed + 100), (8,), 0, 3), 3)
    return x, y


def test_pc_train_step_compiles_once():
    model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, backward="learned")
    algo = pj.PC(pj.PCConfig(T=4, energy=pj.EnergySpec(lam=0.1), lalr=ErrorNormalised()), pj.WeightOptim(), 10)
    calls = _counting(algo)
    state = algo.init(model)
    for i in range(4):
        state, _ = algo.jit_train_step(state, *_batch(i))
    assert calls["n"] == 1


def test_bp_train_step_compiles_once():
    model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    algo = pj.Backprop(pj.WeightOptim(), 10)
    calls = _counting(algo)
    state = algo.init(model)
    for i in range(4):
        state, _ = algo.jit_train_step(state, *_batch(i))
    assert calls["n"] == 1


def test_scan_equals_unrolled_loop():
    net = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=3)
    x, y = _batch(0)
    spec = pj.EnergySpec()
    mus = net.feedforward(x)

    def efn(free, precision):
        return pj.network_energy(net, x, free + (y,), spec, precision=precision)

    optim = pj.LatentOptim(lr=0.1, momentum=0.7)
    rule = ErrorNormalised()
    T, L = 6, net.num_nodes
    scanned, infos = relax(efn, mus[:-1], T=T, optim=optim, rule=rule, free_nodes=(0, 1, 2), num_nodes=L)
    opt = optim.make()
    free, state = mus[:-1], opt.init(mus[:-1])
    energies = []
    for t in range(T):
        free, state, info = latent_step(efn, free, state, jnp.asarray(t), T=T, optimizer=opt, rule=rule,
                                        free_nodes=(0, 1, 2), num_nodes=L)
        energies.append(info.energy)
    for a, b in zip(scanned, free):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(infos.energy, jnp.stack(energies), rtol=1e-5)
    # plain inference lowers the energy
    _, plain = relax(efn, mus[:-1], T=T, optim=pj.LatentOptim(lr=0.1), free_nodes=(0, 1, 2), num_nodes=L)
    assert bool(jnp.all(jnp.diff(plain.energy) < 0))
