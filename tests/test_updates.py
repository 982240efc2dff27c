"""Update rules: a rule's ``Step`` means one thing (gradients to apply to the unchanged state, or the
state after the rule's own steps), and a rule that gates the weight step really leaves the weights alone."""

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.algorithms import Equilibrium


def _flat(tree):
    return jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))])


@dataclass(frozen=True)
class Gate(Equilibrium):
    """Relaxes like Equilibrium, then skips the weight step (returns ctx.state, grads=None)."""

    def step(self, ctx):
        return super().step(ctx)._replace(state=ctx.state, grads=None)


@dataclass(frozen=True)
class Ambiguous(Equilibrium):
    """Returns a changed state *and* gradients: refused."""

    def step(self, ctx):
        out = super().step(ctx)
        return out._replace(state=eqx.tree_at(lambda s: s.step, ctx.state, ctx.state.step + 7))


def _setup(rule):
    model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
    algo = pj.PC(pj.PCConfig(T=3, update=rule), pj.WeightOptim(lr=0.1), 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    y = jax.nn.one_hot(jnp.arange(4) % 3, 3)
    return model, algo, x, y


def test_a_gating_rule_leaves_the_weights_and_the_optimiser_alone():
    model, algo, x, y = _setup(Gate())
    state = algo.init(model)
    new, metrics = algo.train_step(state, x, y)
    np.testing.assert_array_equal(_flat(new.model), _flat(model))
    assert int(new.step) == int(state.step)
    assert np.isfinite(float(metrics["energy"]))


def test_a_rule_returning_a_new_state_and_gradients_is_refused():
    model, algo, x, y = _setup(Ambiguous())
    with pytest.raises(pj.ConfigError, match="returned a new training state \\*and\\* weight gradients"):
        algo.train_step(algo.init(model), x, y)


def test_the_built_in_rule_applies_its_gradients():
    model, algo, x, y = _setup(Equilibrium())
    new, _ = algo.train_step(algo.init(model), x, y)
    assert float(jnp.abs(_flat(new.model) - _flat(model)).max()) > 0 and int(new.step) == 1


@dataclass(frozen=True)
class Legacy(Equilibrium):
    """A rule written against the earlier contract, step(algo, ctx)."""

    def step(self, algo, ctx):
        assert isinstance(algo, pj.PC)
        return super().step(ctx)


def test_a_rule_sees_only_the_context_and_a_legacy_rule_still_runs_with_a_warning():
    ref_model, ref_algo, x, y = _setup(Equilibrium())
    ref, _ = ref_algo.train_step(ref_algo.init(ref_model), x, y)
    model, algo, x, y = _setup(Legacy())
    with pytest.warns(DeprecationWarning, match=r"step\(ctx\)"):
        new, _ = algo.train_step(algo.init(model), x, y)
    np.testing.assert_array_equal(_flat(new.model), _flat(ref.model))
