"""The parameterisation part (what inference frees): real answers.

* ``EPC`` and ``PCALM`` are ``PC`` with their parameterisations (one step skeleton);
* with the errors free (ePC) every target and update rule that the parts accept reaches the same
  equilibrium, and so the same weight update, as with the states free: on a linear network (a
  convex quadratic energy, float64, a long relaxation) ePC with ``Weighted``, ``SoftNudge``, the
  forward update and the contrastive rule (top-down terms on) gives state PC's update;
* the ``Weighted`` target on states is beta^-1 times the clamped step with the output term weighted
  by beta through ``energy.alpha`` (equilibrium and iPC, error front on and off);
* a parameterisation written in a few lines (states scaled by c) plugs into ``PC`` and is exactly
  state PC with the latent rate times c^2;
* the combinations a parameterisation cannot run are refused, naming both parts, from Python and
  from the config.
"""

from dataclasses import dataclass, replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.algorithms import Relaxation, sweep


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _flat(tree):
    return jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))])


def _sgd(lr=1.0):
    return pj.WeightOptim(name="sgd", lr=lr, momentum=0.0, schedule="constant")


def _linear(backward="none"):
    return _f64(pj.build_model("mlp", (4,), 3, key=jax.random.PRNGKey(0), width=5, depth=2, act="identity",
                               backward=backward))


def _data(B=6, d=4, c=3):
    x = jax.random.normal(jax.random.PRNGKey(1), (B, d), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (B,), 0, c), c).astype(jnp.float64)
    return x, y


def _update(algo, net, x, y):
    """The weight update (theta - theta') of one step with SGD at rate 1, and the metrics."""
    new, metrics = algo.train_step(algo.init(net), x, y)
    return _flat(net) - _flat(new.model), metrics


def test_epc_and_pcalm_are_pc_with_their_parameterisations():
    inf = pj.Inference(T=2)
    epc, alm = pj.EPC(inf, pj.EnergySpec(), _sgd(), 1), pj.PCALM(inf, pj.EnergySpec(), _sgd(), 1)
    assert isinstance(epc, pj.PC) and isinstance(alm, pj.PC)
    assert isinstance(epc.parameterisation, pj.Errors) and isinstance(epc.config.target, pj.Weighted)
    assert isinstance(pj.EPC(inf, pj.EnergySpec(), _sgd(), 1, target="nudged").config.target, pj.Clamp)
    assert isinstance(alm.parameterisation, pj.StatesAndDuals) and (alm.rho, alm.dual_lr) == (1.0, 1.0)
    assert type(epc).train_step is pj.PC.train_step and type(alm).train_step is pj.PC.train_step
    assert (epc.name, alm.name) == ("epc", "pc-alm")
    cfg = pj.PCConfig(parameterisation=pj.Errors(), update=pj.ForwardUpdate())
    assert pj.PC(cfg, _sgd(), 1).name == "epc-fu"


COMBOS = {  # name: (PCConfig changes, model backward, energy)
    "weighted": (dict(target=pj.Weighted(), beta=0.3), "none", pj.EnergySpec()),
    "soft_nudge": (dict(target=pj.SoftNudge(), beta=0.3), "none", pj.EnergySpec()),
    "forward_update": (dict(update=pj.ForwardUpdate(), beta=0.5), "none", pj.EnergySpec()),
    "weighted_forward_update": (dict(target=pj.Weighted(), update=pj.ForwardUpdate(), beta=0.3), "none",
                                pj.EnergySpec()),
    "contrastive": (dict(update=pj.Contrastive(), beta=0.5), "learned", pj.EnergySpec(lam=0.2)),
}


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_errors_reach_the_states_equilibrium_with_every_part(combo):
    """z = sweep(e) is a bijection, so E(e) and E(z) have the same minimiser: relaxed to convergence,
    ePC's weight update is state PC's for every target and update rule it accepts."""
    changes, backward, spec = COMBOS[combo]
    with jax.enable_x64(True):
        net, (x, y) = _linear(backward), _data()
        base = pj.PCConfig(T=4000, latent=pj.LatentOptim(lr=0.1), energy=spec, **changes)
        states = pj.PC(base, _sgd(), 1)
        errors = pj.PC(replace(base, parameterisation=pj.Errors()), _sgd(), 1)
        g_states, m_states = _update(states, net, x, y)
        g_errors, m_errors = _update(errors, net, x, y)
        assert float(jnp.linalg.norm(g_states)) > 1e-3
        np.testing.assert_allclose(g_errors, g_states, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(m_errors["energy"], m_states["energy"], rtol=1e-9)
        if combo == "contrastive":  # the free phase really subtracts something
            plain = pj.PC(replace(base, parameterisation=pj.Errors(), update=pj.Equilibrium()), _sgd(), 1)
            assert float(jnp.linalg.norm(_update(plain, net, x, y)[0] - g_errors)) > 1e-4


def test_soft_nudged_errors_free_the_output_error_too():
    with jax.enable_x64(True):
        net, (x, y) = _linear(), _data()
        algo = pj.PC(pj.PCConfig(T=3, target=pj.SoftNudge(), beta=0.3, parameterisation=pj.Errors()), _sgd(), 1)
        _, _, relaxed = algo.train_step(algo.init(net), x, y, return_relaxation=True)
        assert isinstance(relaxed, Relaxation) and len(relaxed.free) == net.num_nodes
        assert float(jnp.abs(relaxed.free[-1]).max()) > 0  # e_L moved: z_L = mu_L + e_L
        for z, z2 in zip(relaxed.latents, sweep(net, x, relaxed.free)):
            np.testing.assert_allclose(z, z2, rtol=1e-13)


@pytest.mark.parametrize("front", [False, True])
def test_weighted_target_is_the_beta_weighted_output_term(front):
    """Weighted(beta = b): E = hidden + b phi_out(mu_L, y), the update (1/b) dE/dtheta. Clamp at beta = 1
    with energy.alpha = (1, ..., 1, b) has the same energy, so its update is b times the weighted one;
    iPC with SGD at rate eta / b then takes the same steps as the weighted iPC at rate eta."""
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (4,), 3, key=jax.random.PRNGKey(0), width=6, depth=3, act="tanh"))
        x, y = _data()
        b, L = 0.25, net.num_nodes
        runtime = pj.Runtime(error_front=front)
        weighted = pj.PCConfig(T=5, latent=pj.LatentOptim(lr=0.2, momentum=0.3), target=pj.Weighted(), beta=b)
        alpha = replace(weighted, target=pj.Clamp(), beta=1.0, energy=pj.EnergySpec(alpha=(1.0,) * (L - 1) + (b,)))
        g_w, m_w = _update(pj.PC(weighted, _sgd(), 1, runtime=runtime), net, x, y)
        g_a, m_a = _update(pj.PC(alpha, _sgd(), 1, runtime=runtime), net, x, y)
        np.testing.assert_allclose(b * g_w, g_a, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(m_w["layer_energy"], m_a["layer_energy"], rtol=1e-10, atol=1e-14)
        ipc_w = pj.PC(replace(weighted, update=pj.Incremental()), _sgd(0.1), 1, runtime=runtime)
        ipc_a = pj.PC(replace(alpha, update=pj.Incremental()), _sgd(0.1 / b), 1, runtime=runtime)
        np.testing.assert_allclose(_update(ipc_w, net, x, y)[0], _update(ipc_a, net, x, y)[0], rtol=1e-9,
                                   atol=1e-13)


@dataclass(frozen=True)
class ScaledStates(pj.States):
    """Free variables v = z / c: z(v) = c v, v_0 = mu / c (a new parameterisation in a few lines)."""

    c: float = 2.0

    def init(self, model, x, latents0, goal):
        return tuple(z / self.c for z in super().init(model, x, latents0, goal))

    def latents(self, model, x, free, goal):
        return super().latents(model, x, tuple(self.c * v for v in free), goal)


def test_a_new_parameterisation_is_one_class():
    """Gradient descent on v = z / c at rate eta moves z by -eta c^2 dE/dz: state PC at rate eta c^2."""
    with jax.enable_x64(True):
        net = _f64(pj.build_model("mlp", (4,), 3, key=jax.random.PRNGKey(0), width=6, depth=3, act="tanh"))
        x, y = _data()
        c, eta = 2.0, 0.03
        scaled = pj.PC(pj.PCConfig(T=6, latent=pj.LatentOptim(lr=eta), parameterisation=ScaledStates(c)), _sgd(), 1)
        plain = pj.PC(pj.PCConfig(T=6, latent=pj.LatentOptim(lr=eta * c * c)), _sgd(), 1)
        g_s, m_s = _update(scaled, net, x, y)
        g_p, m_p = _update(plain, net, x, y)
        np.testing.assert_allclose(g_s, g_p, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(m_s["layer_energy"], m_p["layer_energy"], rtol=1e-10, atol=1e-14)


def test_combinations_a_parameterisation_cannot_run_are_refused():
    inf, spec = pj.Inference(T=4), pj.EnergySpec()
    alm = dict(parameterisation=pj.StatesAndDuals())
    cases = [
        (dict(update=pj.Incremental(), parameterisation=pj.Errors()), "Incremental cannot be combined with "
                                                                        "parameterisation Errors"),
        (dict(eval_steps=2, parameterisation=pj.Errors()), "eval_steps"),
        (dict(target=pj.SoftNudge(), **alm), "target SoftNudge cannot be combined with parameterisation "
                                              "StatesAndDuals"),
        (dict(target=pj.Weighted(), **alm), "target Weighted cannot be combined with parameterisation StatesAndDuals"),
        (dict(update=pj.ForwardUpdate(), **alm), "ForwardUpdate cannot be combined with parameterisation "
                                                  "StatesAndDuals"),
        (dict(update=pj.Contrastive(), **alm), "Contrastive cannot be combined with parameterisation StatesAndDuals"),
        (dict(update=pj.Incremental(), **alm), "Incremental cannot be combined with parameterisation StatesAndDuals"),
        (dict(eval_steps=1, **alm), "eval_steps"),
        (dict(target=pj.Weighted(), update=pj.Contrastive()), "Contrastive cannot be combined with target Weighted"),
        (dict(target=pj.Weighted(), beta=-0.5), "beta must be > 0 with target Weighted"),
    ]
    for changes, match in cases:
        with pytest.raises(pj.ConfigError, match=match):
            pj.PC(pj.PCConfig(T=4, **changes), _sgd(), 1)
    with pytest.raises(pj.ConfigError, match="Incremental cannot be combined with parameterisation Errors"):
        pj.EPC(inf, spec, _sgd(), 1, update=pj.Incremental())
    with pytest.raises(pj.ConfigError, match="ForwardUpdate cannot be combined"):
        pj.PCALM(inf, spec, _sgd(), 1, update=pj.ForwardUpdate())
