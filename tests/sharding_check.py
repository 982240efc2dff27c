"""Run by tests/test_sharding.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4.

``python tests/sharding_check.py CASE ...`` prints one JSON line with a result per case:
``ALGO:MODEL`` (MODEL mlp or cnn) trains two epochs on 1 and on 4 devices and reports the largest
relative difference of the per-epoch train losses and absolute difference of the final parameters;
``resume:DIR`` compares a 2-epoch PC run whose first epoch ran on 4 devices and second (resumed) on
1 with an uninterrupted 1-device run; ``errors`` collects the ConfigErrors of bad device settings.
"""

from __future__ import annotations

import json
import sys

import equinox as eqx
import jax
import numpy as np

from pcjax.config import Config
from pcjax.data import load_dataset
from pcjax.experiment import build, to_dict
from pcjax.training import TrainerConfig, fit


def _setup(algorithm: str, model: str, epochs: int):
    c = Config()
    c.algorithm.name = algorithm
    c.algorithm.latent.lr, c.algorithm.latent.momentum, c.algorithm.T = 0.1, 0.5, 4
    c.model.width, c.model.depth = 64, 2
    c.trainer.epochs, c.trainer.batch_size, c.trainer.progress = epochs, 32, False
    c.optim.lr = 1e-3
    c = to_dict(c)
    if model == "cnn":
        c["model"] = {**to_dict(Config())["model"], "name": "mnist_cnn", "width_multiplier": 0.125}  # no MLP width/depth
        c["algorithm"]["latent"]["lr"] = 0.05
    data = load_dataset("digits", limit_train=256)
    n_train = int(256 * 0.9)
    mdl, algo = build(c, n_train // 32, data.image_shape, data.num_classes)
    return mdl, algo, data


def _fit(algorithm, model, devices, run_dir, epochs, resume=False, stop=None):
    mdl, algo, data = _setup(algorithm, model, epochs)
    tc = TrainerConfig(epochs=stop or epochs, batch_size=32, eval_batch_size=64, chunks_per_epoch=2,
                       progress=False, run_dir=run_dir, seed=0, devices=devices, resume=resume,
                       loop="scan" if model == "mlp" else "step")
    state, record = fit(algo, mdl, data, tc, meta={"name": "t"})
    return state, record


def _params(state):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_array))]


def _rel(a, b):
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6)))


def _compare(s1, r1, s4, r4) -> dict:
    l1 = np.array([e["train_loss"] for e in r1["epochs"]])
    l4 = np.array([e["train_loss"] for e in r4["epochs"]])
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(_params(s4), _params(s1))]
    scale = max(float(np.max(np.abs(b))) for b in _params(s1))
    return {"loss_rel": _rel(l4, l1), "param_abs": max(diffs), "param_scale": scale,
            "losses_1": l1.tolist(), "losses_4": l4.tolist(), "devices": r4["hardware"]["devices"],
            "acc_1": [e["test_acc"] for e in r1["epochs"]], "acc_4": [e["test_acc"] for e in r4["epochs"]],
            "sharding": str(jax.tree_util.tree_leaves(eqx.filter(s4.model, eqx.is_array))[0].sharding)}


def _errors() -> dict:
    from pcjax.errors import ConfigError

    out = {}
    for name, kw in (("batch", dict(batch_size=30)), ("eval", dict(eval_batch_size=1001)),
                     ("too_many", dict(devices=8))):
        mdl, algo, data = _setup("pc", "mlp", 1)
        tc = TrainerConfig(**{"epochs": 1, "batch_size": 32, "progress": False, "devices": 4, **kw})
        try:
            fit(algo, mdl, data, tc)
            out[name] = None
        except ConfigError as err:
            out[name] = str(err)
    return out


def main(argv):
    """Each argument a case: ALGO:MODEL (MODEL mlp or cnn), ``resume:DIR`` or ``errors``."""
    assert jax.local_device_count() == 4, jax.local_device_count()
    out = {}
    for case in argv:
        kind, _, arg = case.partition(":")
        if kind == "errors":
            out[case] = _errors()
        elif kind == "resume":
            s1, r1 = _fit("pc", "mlp", 1, f"{arg}/one", 2)
            _fit("pc", "mlp", 4, f"{arg}/four", 2, stop=1)  # the first epoch on 4 devices ...
            s4, r4 = _fit("pc", "mlp", 1, f"{arg}/four", 2, resume=True)  # ... the second on 1
            out[case] = dict(_compare(s1, r1, s4, r4), resumed_from=r4["resumes"][0]["epoch"],
                             resumed_devices=r4["resumes"][0]["devices"])
        else:
            s1, r1 = _fit(kind, arg, 1, None, 2)
            s4, r4 = _fit(kind, arg, 4, None, 2)
            out[case] = _compare(s1, r1, s4, r4)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
