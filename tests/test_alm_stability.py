"""PC-ALM's relaxation as an iteration map (``pcjax.alm_stability``): it is the algorithm's own relaxation
(float64), its saddle is a fixed point for every state rate, and the power-iteration spectral radius is
the dense Jacobian's largest |eigenvalue|."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import pcjax as pj
from pcjax.algorithms.pc import feedforward
from pcjax.alm_stability import find_saddle, iteration_map, saddle_gap, spectral_radius, state_step


def _setup(T=6, lr=0.25, depth=3):
    with jax.enable_x64(True):
        net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
                                     pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=5, depth=depth,
                                                    act="tanh", residual=True, init="mup", preact=True))
        x = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)
        y = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
        alm = pj.PCALM(pj.Inference(T, pj.LatentOptim("sgd", lr)), pj.EnergySpec(), pj.WeightOptim(lr=1e-3), 10)
        beta = alm.init(net).beta
        problem = alm.problem(net, x, y, feedforward(net, x), beta)
    return alm, net, x, problem


def test_the_map_is_the_algorithms_relaxation_in_float64():
    with jax.enable_x64(True):
        alm, net, x, problem = _setup(T=6)
        (z, lam), _ = problem.relax(alm.inference)
        v = problem.init
        F = iteration_map(problem, net, x, 0.25, 1.0)
        for _ in range(5):
            v = F(v)
        z2, lam2 = state_step(problem, 0.25)(v)
        for a, b in zip(z + lam, z2 + lam2):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_the_saddle_is_a_fixed_point_for_every_stable_rate():
    with jax.enable_x64(True):
        _, net, x, problem = _setup()
        saddle = find_saddle(iteration_map(problem, net, x, 0.1, 1.0), problem.init, 3000)
        assert max(saddle_gap(problem, net, x, saddle)) < 1e-8
        again = iteration_map(problem, net, x, 0.3, 1.0)(saddle)
        assert max(saddle_gap(problem, net, x, again)) < 1e-8


def test_power_iteration_gives_the_dense_jacobians_spectral_radius():
    with jax.enable_x64(True):
        _, net, x, problem = _setup()
        saddle = find_saddle(iteration_map(problem, net, x, 0.1, 1.0), problem.init, 3000)
        flat, unravel = ravel_pytree(saddle)
        for eta in (0.1, 0.6, 0.9):
            F = iteration_map(problem, net, x, eta, 1.0)
            J = jax.jacfwd(lambda f: ravel_pytree(F(unravel(f)))[0])(flat)
            dense = float(np.abs(np.linalg.eigvals(np.asarray(J))).max())
            est = spectral_radius(F, saddle, jax.random.PRNGKey(0), iters=2000)
            assert abs(est - dense) < 0.02 * dense, (eta, est, dense)
        # a larger state rate is less stable here: the radius grows past 1 between these rates
        radii = [spectral_radius(iteration_map(problem, net, x, eta, 1.0), saddle, jax.random.PRNGKey(0), 2000)
                 for eta in (0.1, 0.9)]
        assert radii[0] < radii[1]
