"""Closed-form energies, gradients and equilibria of a linear network against pcjax's values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import enable_x64

import pcjax as pj
from pcjax.inference import relax


def _linear_net(key, sizes=(3, 4, 2)):
    k1, k2 = jax.random.split(key)
    blocks = [pj.Dense(sizes[0], sizes[1], key=k1), pj.Dense(sizes[1], sizes[2], key=k2)]
    return pj.Network(blocks, (sizes[0],))


def test_linear_network_energy_gradient_and_equilibrium():
    with enable_x64(True):
        key = jax.random.PRNGKey(0)
        net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, _linear_net(key))
        kx, ky, kz = jax.random.split(jax.random.PRNGKey(1), 3)
        B = 5
        x = jax.random.normal(kx, (B, 3), jnp.float64)
        y = jax.random.normal(ky, (B, 2), jnp.float64)
        z1 = jax.random.normal(kz, (B, 4), jnp.float64)
        W1, b1 = net.blocks[0].weight, net.blocks[0].bias
        W2, b2 = net.blocks[1].weight, net.blocks[1].bias
        spec = pj.EnergySpec()

        # E = (1/B) sum_b 0.5||z1 - (x W1 + b1)||^2 + 0.5||y - (z1 W2 + b2)||^2
        e1 = z1 - (x @ W1 + b1)
        e2 = y - (z1 @ W2 + b2)
        closed = 0.5 * (np.sum(e1**2) + np.sum(e2**2)) / B
        per_sample, _ = net.energy(x, (z1, y), spec)
        np.testing.assert_allclose(per_sample.mean(), closed, rtol=1e-12)

        # dE_sum/dz1 = e1 - e2 W2^T
        grad = jax.grad(lambda z: net.energy(x, (z, y), spec)[0].sum())(z1)
        np.testing.assert_allclose(grad, e1 - e2 @ W2.T, rtol=1e-10, atol=1e-12)

        # Equilibrium: z1* (I + W2 W2^T) = mu1 + (y - b2) W2^T
        mu1 = x @ W1 + b1
        z_star = np.linalg.solve((np.eye(4) + W2 @ W2.T).T, (mu1 + (y - b2) @ W2.T).T).T

        def efn(free, precision):
            return pj.network_energy(net, x, free + (y,), spec, precision=precision)

        (z_T,), _ = relax(efn, (mu1,), T=400, optim=pj.LatentOptim(lr=0.2, momentum=0.5), free_nodes=(0,), num_nodes=2)
        np.testing.assert_allclose(z_T, z_star, rtol=1e-8, atol=1e-10)

        # Weight gradient at equilibrium: dE/dW2 = -(1/B) z1*^T (y - z1* W2 - b2)
        gW = eqx.filter_grad(lambda m: m.energy(x, (jnp.asarray(z_star), y), spec)[0].mean())(net)
        e2s = y - (z_star @ W2 + b2)
        np.testing.assert_allclose(gW.blocks[1].weight, -(z_star.T @ e2s) / B, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gW.blocks[0].weight, -(x.T @ (z_star - mu1)) / B, rtol=1e-10, atol=1e-12)


def test_cross_entropy_energy_matches_formula():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    target = jnp.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    expected = -np.sum(np.asarray(target) * np.asarray(jax.nn.log_softmax(logits)), axis=1)
    np.testing.assert_allclose(pj.get_energy("cross_entropy")(logits, target), expected, rtol=1e-6)


def test_energy_is_zero_after_feedforward_init_when_output_free():
    net = pj.build_model("mlp", (5,), 3, key=jax.random.PRNGKey(0), width=8, depth=2, residual=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    mus = net.feedforward(x)
    total, terms = net.energy(x, mus, pj.EnergySpec())
    assert float(jnp.abs(total).max()) == 0.0
    np.testing.assert_array_equal(net(x), mus[-1])
