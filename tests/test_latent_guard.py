"""``algorithm.latent.name=guarded_sgd``: gradient descent on the free variables that backs off per
sample instead of climbing the energy. Below the stable step size it is plain SGD (to float rounding);
above it (where SGD diverges) it still lowers every sample's energy; it is refused with momentum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.inference import LatentOptim, relax
from pcjax.network_energy import LayerEnergies

CURV = jnp.array([1.0, 4.0])  # per-sample curvature: E_b(z) = 0.5 c_b ||z_b||^2


def _quadratic(free, precision):
    (z,) = free
    per_sample = 0.5 * CURV * jnp.sum(z**2, axis=1)
    norm = jnp.sqrt(jnp.mean(z**2))
    return per_sample, LayerEnergies(per_sample[None, :].T, norm[None].repeat(2)[:2], per_sample[None, :].T)


def _relax(name: str, lr: float, T: int = 12):
    z0 = (jnp.ones((2, 3)),)
    return relax(_quadratic, z0, T=T, optim=LatentOptim(name=name, lr=lr), free_nodes=(0,), num_nodes=2)


def test_below_the_stable_step_it_is_plain_sgd():
    (zg,), ig = _relax("guarded_sgd", 0.2)  # lr c < 2 for both samples: every step lowers the energy
    (zs,), is_ = _relax("sgd", 0.2)
    # the same updates; XLA may contract z - lr g differently in the two programs (2e-7 relative seen)
    np.testing.assert_allclose(np.asarray(zg), np.asarray(zs), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ig.energy), np.asarray(is_.energy), rtol=1e-6)


def test_above_it_sgd_climbs_and_the_guard_descends():
    lr = 0.6  # sample 1: lr c = 2.4 > 2, plain GD multiplies its z by -1.4 each step
    (zs,), _ = _relax("sgd", lr)
    (zg,), info = _relax("guarded_sgd", lr)
    assert float(jnp.abs(zs[1]).max()) > 50.0  # SGD diverged on sample 1
    assert float(jnp.abs(zg[1]).max()) < 1.0   # the guard halved its rate and converged
    np.testing.assert_allclose(np.asarray(zg[0]), np.asarray(zs[0]))  # sample 0 is never touched by the guard
    energies = np.asarray(info.energy)
    assert energies[-1] < 0.05 * energies[0]


def test_it_is_refused_with_momentum():
    with pytest.raises(pj.ConfigError, match="guarded_sgd.*momentum=0"):
        LatentOptim(name="guarded_sgd", lr=0.1, momentum=0.5).make()


def test_the_error_front_is_not_used_with_the_guard():
    net = pj.build_model("mlp", (8,), 10, key=jax.random.PRNGKey(0), width=8, depth=3)
    inf = pj.Inference(T=4, optim=LatentOptim(name="guarded_sgd", lr=0.1))
    algo = pj.PC(pj.PCConfig(T=4, latent=inf.optim), pj.WeightOptim(), 10,
                 runtime=pj.Runtime(error_front=True))
    x, y = jnp.ones((4, 8)), jax.nn.one_hot(jnp.arange(4), 10)
    state = algo.init(net)
    new, metrics = algo.train_step(state, x, y)  # runs (the front would compare partial energies)
    assert np.isfinite(float(metrics["energy"]))
    assert algo.front(net, algo.problem(net, x, y, net.feedforward(x), state.beta))[0] == ()
