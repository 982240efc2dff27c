"""The uncapped log-normalised LALR rule: closed-form multipliers and the floor."""

import jax.numpy as jnp
import numpy as np

import pcjax as pj


def test_log_normalised_compensates_the_decay_exactly_and_respects_the_floor():
    e = jnp.array([1e-12, 1e-6, 1e-3, 1.0])
    rule = pj.make_lalr("log_normalised")
    rho = rule.scales(jnp.asarray(0), e, 8).step
    mean = float(e.mean())
    np.testing.assert_allclose(rho, mean / np.maximum(np.asarray(e), 1e-8), rtol=1e-5)
    assert float(rho[0]) > 1e6  # far beyond ErrorNormalised's cap of 10
    half = pj.make_lalr("log_normalised", power=0.5).scales(jnp.asarray(0), e, 8).step
    np.testing.assert_allclose(jnp.log(half), 0.5 * jnp.log(rho), rtol=1e-5)
    zeros = pj.make_lalr("log_normalised").scales(jnp.asarray(0), jnp.zeros(3), 8).step
    assert bool(jnp.all(jnp.isfinite(zeros)))
