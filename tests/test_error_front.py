"""The error front on deep dense networks: chosen by ``auto`` on a CPU from ``FRONT_NODES`` nodes, its
steps grouped in chunks that share an active set, and the same result as the full relaxation (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pcjax as pj
from pcjax.algorithms.parameterisation import residual_front
from pcjax.error_front import coarsen_schedule, error_front_schedule, error_nodes
from pcjax.inference import ActiveSet, schedule_runs
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


def test_schedule_runs_are_maximal_runs_of_equal_sets_covering_the_head_in_order():
    a, b, c = ActiveSet((3,), ()), ActiveSet((2, 3), (1,)), ActiveSet((1, 2, 3), (0, 1))
    assert schedule_runs((a, b, b, b, c, c), 6) == ((0, 1, a), (1, 4, b), (4, 6, c))
    assert schedule_runs((a, b, b, b, c, c), 3) == ((0, 1, a), (1, 3, b))
    assert schedule_runs((a, b), 0) == ()
    coarse = coarsen_schedule(error_front_schedule(21, (), 20))
    runs = schedule_runs(coarse, len(coarse))
    assert [r[0] for r in runs[1:]] == [r[1] for r in runs[:-1]] and runs[-1][1] == len(coarse)
    assert all(coarse[t] == active for start, end, active in runs for t in range(start, end))
    assert all(x[2] != y[2] for x, y in zip(runs, runs[1:]))


def test_error_nodes_are_the_output_the_moved_nodes_and_what_they_feed():
    assert error_nodes(5, (), ()) == {5}
    assert error_nodes(5, (), {3}) == {3, 4, 5}
    assert error_nodes(6, ((1, 4),), {1}) == {1, 2, 4, 6}  # node 1 feeds node 2 and, by the skip, node 4


def test_pcalm_residual_front_is_the_next_steps_error_nodes():
    """After the front's step t, the residuals that can be non-zero are exactly the hidden error nodes of
    step t + 1 (one rule, shared with the state-PC front)."""
    for net in (_resmlp(12), pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=9,
                                             act="relu", residual=True, init="mup", preact=False)):
        L = net.num_nodes
        sched = error_front_schedule(L, net.skip_edges, 3 * L)
        for now, nxt in zip(sched, sched[1:]):
            assert residual_front(net, now) == tuple(l for l in nxt.terms if l < L)
        assert residual_front(net, sched[-1]) == tuple(range(1, L))
