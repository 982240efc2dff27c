"""Algorithm settings whose training steps are pinned by golden outputs (``golden_steps.npz``).

Each setting is a set of overrides on the default plain config dict; ``run_setting`` builds the
model and algorithm through ``pcjax.experiment.build`` (the config -> objects path every run takes),
runs two training steps and one evaluation in float64 on a fixed batch, and returns every number
that the step produces: the parameters after each step, the metrics and the evaluation output.
``python tests/golden/settings.py`` (re)records the file; only do that for an intended change.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden_steps.npz")

MLP = {"model": {"name": "mlp", "width": 12, "depth": 3, "act": "gelu"}}
RESMLP = {"model": {"name": "mlp", "width": 12, "depth": 4, "act": "relu", "residual": True, "init": "mup",
                    "preact": True}}
CNN = {"model": {"name": "mnist_cnn", "width_multiplier": 0.125, "act": "gelu"}}
PC = {"algorithm": {"name": "pc", "variant": "pc", "T": 4, "beta": 1.0, "contrast": False,
                    "latent": {"name": "sgd", "lr": 0.1, "momentum": 0.5}},
      "energy": {"lam": 0.0}, "lalr": {"rule": "constant", "params": {}}}
BIDIR = {"energy": {"lam": 0.1}, "model": {"backward": "learned"}}
EPC = {"algorithm": {"name": "epc", "T": 4, "beta": 1.0, "latent": {"name": "sgd", "lr": 0.3, "momentum": 0.0}},
       "energy": {"lam": 0.0}, "lalr": {"rule": "constant", "params": {}}}
ALM = {"algorithm": {"name": "pcalm", "T": 6, "beta": 1.0, "latent": {"name": "sgd", "lr": 0.25, "momentum": 0.0},
                     "params": {"rho": 1.0, "dual_lr": 1.0}},
       "energy": {"lam": 0.0}, "lalr": {"rule": "constant", "params": {}}}


def _merge(base: dict, *updates: dict) -> dict:
    out = copy.deepcopy(base)
    for upd in updates:
        for k, v in upd.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = _merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out


SETTINGS: dict[str, tuple[dict, ...]] = {
    "mlp_pc_clamp": (MLP, PC),
    "mlp_pc_front": (MLP, PC, {"algorithm": {"error_front": True}}),
    "mlp_pc_beta05": (MLP, PC, {"algorithm": {"beta": 0.5}}),
    "mlp_pc_soft": (MLP, PC, {"algorithm": {"beta": 0.2, "nudge": "soft"}}),
    "mlp_pc_ce": (MLP, PC, {"energy": {"output": "cross_entropy"}}),
    "mlp_pc_mean_grad": (MLP, PC, {"algorithm": {"latent_grad": "mean", "latent": {"lr": 2.0}}}),
    "mlp_pc_adam": (MLP, PC, {"algorithm": {"latent": {"name": "adam", "lr": 0.05, "momentum": 0.0}}}),
    "mlp_pc_geometric": (MLP, PC, {"lalr": {"rule": "geometric", "params": {"r": 1.5}}}),
    "mlp_pc_errnorm": (MLP, PC, {"lalr": {"rule": "error_normalised", "params": {"eps": 1e-3, "max_scale": 10.0}}}),
    "mlp_pc_precision": (MLP, PC, {"lalr": {"rule": "precision", "params": {"k": 1.0, "norm": "peak"}}}),
    "mlp_pc_lalr_weights": (MLP, PC, {"lalr": {"rule": "geometric", "params": {"r": 1.5}},
                                      "algorithm": {"lalr_weights": True}}),
    "mlp_bpc_plain": (MLP, PC, BIDIR),
    "mlp_bpc_contrast": (MLP, PC, BIDIR, {"algorithm": {"contrast": True},
                                          "lalr": {"rule": "error_normalised", "params": {"max_scale": 2.0}}}),
    "mlp_bpc_tied": (MLP, PC, BIDIR, {"model": {"backward": "tied"}}),
    "mlp_bpc_eval_steps": (MLP, PC, BIDIR, {"algorithm": {"eval_steps": 3}}),
    "mlp_ipc": (MLP, PC, {"algorithm": {"variant": "ipc", "latent": {"lr": 0.5, "momentum": 0.35}}}),
    "mlp_fu": (MLP, PC, {"algorithm": {"variant": "fu"}}),
    "mlp_fu_front": (MLP, PC, {"algorithm": {"variant": "fu", "error_front": True}}),
    "resmlp_pc": (RESMLP, PC, {"algorithm": {"T": 3}}),
    "resmlp_pc_front": (RESMLP, PC, {"algorithm": {"T": 3, "error_front": True}}),
    "mlp_bp_se": (MLP, {"algorithm": {"name": "bp", "loss": "gaussian"}, "energy": {"lam": 0.0}}),
    "mlp_bp_ce": (MLP, {"algorithm": {"name": "bp", "loss": "cross_entropy"}, "energy": {"lam": 0.0}}),
    "cnn_pc": (CNN, PC, {"algorithm": {"T": 3, "error_front": False, "unroll": 1}}),
    "cnn_pc_front": (CNN, PC, {"algorithm": {"T": 3, "error_front": True, "unroll": True}}),
    "cnn_bpc_contrast": (CNN, PC, BIDIR, {"algorithm": {"T": 3, "contrast": True, "error_front": False,
                                                        "unroll": 1}}),
    "cnn_bp": (CNN, {"algorithm": {"name": "bp", "loss": "gaussian"}, "energy": {"lam": 0.0}}),
    # ePC (recorded before it moves into the state-PC skeleton) and PC-ALM
    "mlp_epc_clamp": (MLP, EPC),
    "mlp_epc_beta01": (MLP, EPC, {"algorithm": {"beta": 0.1}}),
    "mlp_epc_momentum": (MLP, EPC, {"algorithm": {"latent": {"momentum": 0.5}}}),
    "mlp_epc_ce": (MLP, EPC, {"algorithm": {"beta": 0.1}, "energy": {"output": "cross_entropy"}}),
    "mlp_epc_errnorm": (MLP, EPC, {"lalr": {"rule": "error_normalised", "params": {"eps": 1e-3, "max_scale": 10.0}}}),
    "resmlp_epc": (RESMLP, EPC, {"algorithm": {"beta": 0.1, "T": 3}}),
    "resmlp_pcalm": (RESMLP, ALM),
    "mlp_pcalm_rho2": (MLP, ALM, {"algorithm": {"params": {"rho": 2.0, "dual_lr": 0.5}}}),
}
#: settings added after the first recording; ``python tests/golden/settings.py --add`` records only
#: those missing from the file and keeps every recorded one
ADDED = ("mlp_epc_clamp", "mlp_epc_beta01", "mlp_epc_momentum", "mlp_epc_ce", "mlp_epc_errnorm", "resmlp_epc",
         "resmlp_pcalm", "mlp_pcalm_rho2")


def setting_config(name: str) -> dict:
    """The plain config dict of setting ``name`` (defaults + the setting's overrides)."""
    from pcjax.config import Config
    from pcjax.experiment import to_dict

    base = to_dict(Config())
    base["optim"].update(name="adam", lr=1e-2, schedule="constant")
    base["trainer"]["epochs"] = 1
    return _merge(base, *SETTINGS[name])


def run_setting(name: str, *, float32_beta: bool = False) -> dict[str, np.ndarray]:
    """Two training steps and one evaluation of setting ``name`` in float64; every output as arrays.

    ``float32_beta``: start from beta rounded to float32, as the training state held it when the
    golden outputs were recorded (it is now held in float64 under x64)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from pcjax.experiment import build

    c = setting_config(name)
    shape = (28, 28, 1) if c["model"]["name"] == "mnist_cnn" else (6, 6, 1)
    with jax.enable_x64(True):
        model, algo = build(c, 10, shape, 10)
        model = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
        kx, = jax.random.split(jax.random.PRNGKey(7), 1)
        x = jax.random.normal(kx, (6,) + shape, jnp.float64)
        y = jax.nn.one_hot(jnp.arange(6) % 10, 10, dtype=jnp.float64)
        state = algo.init(model)
        if float32_beta:
            state = eqx.tree_at(lambda st: st.beta, state, jnp.asarray(np.float32(state.beta), jnp.float64))
        out: dict[str, np.ndarray] = {}
        for s in range(2):
            state, metrics = algo.train_step(state, x, y)
            for k, v in sorted(metrics.items()):
                out[f"step{s}/metric/{k}"] = np.asarray(v)
            leaves = jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_inexact_array))
            for i, leaf in enumerate(leaves):
                out[f"step{s}/param/{i}"] = np.asarray(leaf)
        out["eval"] = np.asarray(algo.eval_step(state, x))
    return out


def record(only_missing: bool = False) -> None:
    """Write every setting's outputs to ``golden_steps.npz`` (``only_missing``: keep the recorded
    settings and add the ones the file lacks)."""
    arrays = {}
    if only_missing and GOLDEN.exists():
        with np.load(GOLDEN) as data:
            arrays = {k: data[k] for k in data.files}
    recorded = {k.split("/", 1)[0] for k in arrays}
    for name in SETTINGS:
        if name in recorded:
            continue
        for k, v in run_setting(name).items():
            arrays[f"{name}/{k}"] = v
        print("recorded", name, flush=True)
    np.savez_compressed(GOLDEN, **arrays)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    record(only_missing="--add" in sys.argv)
