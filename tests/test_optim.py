"""The weight optimiser: layer-wise rates have their closed forms; the config schema and the runtime
class cannot drift apart (``optim.b1`` was once rejected by the schema while ``WeightOptim`` had it)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import pcjax as pj
from pcjax.config import OptimCfg
from pcjax.optim import WeightOptim

PARAMS = {"a": jnp.ones((3, 3)), "b": 2 * jnp.ones((4,))}
GRADS = {"a": 1e-3 * jnp.arange(9.0).reshape(3, 3), "b": 10 * jnp.ones((4,))}


def _norms(opt):
    u, _ = opt.update(GRADS, opt.init(PARAMS), PARAMS)
    return {k: float(jnp.linalg.norm(v)) for k, v in u.items()}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_trust_ratio_moves_every_layer_by_lr_times_its_weight_norm(name):
    got = _norms(WeightOptim(name=name, lr=0.1, momentum=0.0, schedule="constant", layerwise="trust_ratio").make(10))
    assert got["a"] == pytest.approx(0.1 * 3.0, rel=1e-5) and got["b"] == pytest.approx(0.1 * 4.0, rel=1e-5)


def test_normalized_gives_every_layer_an_update_of_rms_lr():
    got = _norms(WeightOptim(name="sgd", lr=0.1, momentum=0.0, schedule="constant", layerwise="normalized").make(10))
    assert got["a"] == pytest.approx(0.1 * 3.0, rel=1e-5) and got["b"] == pytest.approx(0.1 * 2.0, rel=1e-5)


def test_without_layerwise_the_optimiser_is_unchanged():
    """``layerwise=none`` is the plain optax optimiser: SGD's update is exactly -lr g."""
    opt = WeightOptim(name="sgd", lr=0.1, momentum=0.0, schedule="constant").make(10)
    u, _ = opt.update(GRADS, opt.init(PARAMS), PARAMS)
    for k in GRADS:
        np.testing.assert_array_equal(u[k], -0.1 * GRADS[k])


def test_lamb_is_adam_with_the_trust_ratio():
    lamb = _norms(WeightOptim(name="lamb", lr=0.1, schedule="constant").make(10))
    assert lamb["a"] == pytest.approx(0.3, rel=1e-5) and lamb["b"] == pytest.approx(0.4, rel=1e-5)


def test_invalid_choices_are_refused():
    with pytest.raises(pj.ConfigError, match="optim.layerwise"):
        WeightOptim(layerwise="bogus")
    with pytest.raises(pj.ConfigError, match="already scales"):
        WeightOptim(name="lamb", layerwise="trust_ratio")
    with pytest.raises(pj.ConfigError, match="optim.name"):
        WeightOptim(name="rmsprop")


def test_the_config_schema_has_every_weight_optimiser_field_with_the_same_default():
    schema = {f.name: f.default for f in dataclasses.fields(OptimCfg)}
    runtime = {f.name: f.default for f in dataclasses.fields(WeightOptim)}
    assert schema == runtime


def test_layerwise_and_adam_moments_are_settable_from_the_command_line():
    from pcjax.experiment import build, to_dict

    c = to_dict(pj.load_config(None, overrides=["optim.b1=0.95", "optim.layerwise=trust_ratio", "algorithm=pc"]))
    _, algo = build(c, 10, (8, 8, 1), 10)
    assert algo.weight_optim.b1 == 0.95 and algo.weight_optim.layerwise == "trust_ratio"
    from pcjax.config import validate_config

    with pytest.raises(pj.ConfigError, match="optim.layerwise"):
        validate_config(to_dict(pj.load_config(None, overrides=["optim.layerwise=bogus"])))


def test_the_config_schema_has_every_latent_optimiser_field_with_the_same_default():
    from dataclasses import asdict

    from pcjax.config import LatentCfg
    from pcjax.inference import LatentOptim

    assert asdict(LatentCfg()) == asdict(LatentOptim())
