"""The error front on deep dense networks: chosen by ``auto`` on a CPU from ``FRONT_NODES`` nodes, its
steps grouped in chunks that share an active set, and the same result as the full relaxation (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pcjax as pj
from pcjax.error_front import coarsen_schedule, error_front_schedule
from pcjax.runtime import FRONT_NODES, resolve_runtime


def _resmlp(depth):
    return pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=depth, act="relu", residual=True,
                          init="mup", preact=True)


def test_auto_turns_the_front_on_for_deep_dense_networks_on_a_cpu_only():
    deep, shallow = _resmlp(FRONT_NODES), _resmlp(4)
    assert resolve_runtime(deep, backend="cpu").error_front is True
    assert resolve_runtime(shallow, backend="cpu").error_front is False
    assert resolve_runtime(deep, backend="gpu").error_front is False
    assert resolve_runtime(deep, error_front=False, backend="cpu").error_front is False


def test_coarsened_schedule_chunks_share_their_last_steps_superset():
    net = _resmlp(20)
    fine = error_front_schedule(net.num_nodes, net.skip_edges, 20)
    coarse = coarsen_schedule(fine)
    assert len(coarse) == len(fine) and len(set(coarse)) == int(np.ceil(len(fine) / np.ceil(np.sqrt(len(fine)))))
    for f, c in zip(fine, coarse):
        assert set(f.terms) <= set(c.terms) and set(f.grads) <= set(c.grads)


def test_deep_front_equals_the_full_relaxation_in_float64():
    """20 layers, T = 20: the chunked front (7 distinct active sets) gives the full step's weights, energies
    and traces to float64 rounding."""
    with jax.enable_x64(True):
        net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, _resmlp(20))
        x = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)
        y = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
        out = {}
        for front in (False, True):
            algo = pj.PC(pj.PCConfig(T=20, latent=pj.LatentOptim("sgd", 0.3)),
                         pj.WeightOptim(name="sgd", lr=0.1, momentum=0.0, schedule="constant"), 10,
                         runtime=pj.Runtime(error_front=front))
            out[front] = algo.train_step(algo.init(net), x, y)
        (a, ma), (b, mb) = out[False], out[True]
        for u, v in zip(jax.tree_util.tree_leaves(eqx.filter(a.model, eqx.is_inexact_array)),
                        jax.tree_util.tree_leaves(eqx.filter(b.model, eqx.is_inexact_array))):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-15)
        # the full path recomputes mu at z = mu and gets hidden energies of ~1e-35 where the front skips
        # the terms (exactly 0; the first chunk evaluates its last step's terms near the top): the same to
        # float64 rounding
        np.testing.assert_allclose(ma["layer_energy"], mb["layer_energy"], rtol=1e-12, atol=1e-20)
        assert float(jnp.abs(mb["layer_energy"][0, :10]).max()) == 0.0
