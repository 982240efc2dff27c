"""Objects from a plain config dict: the model, energy, runtime policy and algorithm a run trains,
and the labels its record and tables carry.

``build(c, steps_per_epoch, input_shape, num_classes)`` is the config -> objects path every run takes
(``run_experiment``, the replica runner, the benchmarks and the golden tests); it imports no part of
the run machinery (records, locks, trackers), so those may import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any

import jax

from .algorithms import BuildContext, build_algorithm, get_algorithm
from .config import ModelCfg, check_choice, check_range
from .inference import Inference, LatentOptim
from .lalr import make_lalr
from .models import MODELS, build_model, model_options
from .network import EnergySpec
from .optim import WeightOptim
from .runtime import Runtime, resolve_runtime

__all__ = ["algorithm_label", "beta_schedule", "build", "build_model_from_config", "build_runtime", "energy_spec",
           "to_dict"]


def to_dict(cfg: Any) -> dict:
    """A plain, JSON-serialisable dict of a DictConfig, dataclass or dict config."""
    if is_dataclass(cfg):
        return asdict(cfg)
    if isinstance(cfg, dict):
        return json.loads(json.dumps(cfg, default=str))
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _term_label(term: Any) -> str:
    """``se`` for the Gaussian (squared-error) term, ``ce`` for cross-entropy, else the term's name."""
    if term in ("gaussian", "se"):
        return "se"
    if term in ("cross_entropy", "ce"):
        return "ce"
    return term if isinstance(term, str) else getattr(term, "__name__", "custom")


def algorithm_label(c: dict) -> str:
    """Short label of the training method, e.g. ``pc-se``, ``bp-ce``, ``bpc-ce+lalr``, ``epc-se``.

    The part after the first ``-`` is the output term (``se``, ``ce`` or a registered term's name,
    ``pc-student_t``); a hidden or top-down term other than the Gaussian is appended
    (``pc-se+hidden:student_t``; the top-down term only when the energy has top-down terms), so
    runs with different energies never share a label."""
    a, e = c["algorithm"], c["energy"]
    out = _term_label(e["output"])
    if a["name"] == "bp":
        return "bp-" + _term_label(a.get("loss") or e["output"])
    lam = e["lam"] if isinstance(e["lam"], list) else [e["lam"]]
    bidir = any(float(v) != 0 for v in lam)
    if a["name"] == "pc":
        base = {"pc": "pc", "ipc": "ipc", "fu": "pc-fu"}.get(a["variant"], a["variant"])
        if bidir:
            base = "bpc" if a["variant"] == "pc" else "b" + base
    else:
        base = ("b" if bidir else "") + a["name"]
    label = f"{base}-{out}"
    if _term_label(e.get("hidden", "gaussian")) != "se":
        label += f"+hidden:{_term_label(e['hidden'])}"
    if bidir and _term_label(e.get("backward", "gaussian")) != "se":
        label += f"+backward:{_term_label(e['backward'])}"
    if a["name"] != "pc":  # beta is ePC's output weight, not a nudging variant
        if float(a["beta"]) != 1.0:
            label += f"+beta:{float(a['beta']):g}"
    elif a["beta_schedule"] == "random_sign":
        label = label.replace("pc-", "pc-cn-", 1)
    elif float(a["beta"]) < 0:
        label = label.replace("pc-", "pc-nn-", 1)
    elif float(a["beta"]) != 1.0:
        label = label.replace("pc-", "pc-pn-", 1)
    if a.get("contrast"):
        label += "+contrast"
    if c["lalr"]["rule"] != "constant":
        label += f"+lalr:{c['lalr']['rule']}"
    if c["model"].get("skip", "none") != "none" or c["model"].get("residual"):
        label += "+skip"
    return label


def energy_spec(c: dict) -> EnergySpec:
    """The EnergySpec of a plain config dict (``energy.params`` bound to the terms that take them)."""
    e = c["energy"]
    return EnergySpec(e["hidden"], e["output"], e["backward"], _tuple(e["alpha"]), _tuple(e["lam"]),
                      dict(e.get("params") or {}))


def build_model_from_config(c: dict, input_shape, num_classes: int, spec: EnergySpec):
    """The model of a plain config dict (``model.backward=auto``: learned top-down predictors when
    the energy has top-down terms). An option the model's builder does not take is refused
    (``ConfigError``) when it differs from the schema default."""
    check_choice("model.name", c["model"]["name"], MODELS)
    m = dict(c["model"])
    name = m.pop("name")
    options = model_options(name, m, asdict(ModelCfg()))  # refuses an option the builder would ignore
    if options.get("backward") == "auto":
        options["backward"] = "learned" if (spec.bidirectional and c["algorithm"]["name"] != "bp") else "none"
    return build_model(name, input_shape, num_classes, key=jax.random.PRNGKey(c["seed"]), **options)


def build_runtime(c: dict, model) -> Runtime:
    """The runtime policy of a plain config dict for ``model`` on this backend (``auto`` resolved)."""
    a = c["algorithm"]
    return resolve_runtime(model, error_front=a.get("error_front", "auto"), unroll=a.get("unroll", "auto"),
                           compute_dtype=a.get("compute_dtype"), loop=c.get("trainer", {}).get("loop", "auto"),
                           xla_fusion=a.get("xla_fusion", "auto"), algorithm=a.get("name"))


def build(c: dict, steps_per_epoch: int, input_shape, num_classes: int):
    """Model and algorithm from a plain config dict (the algorithm from the registry)."""
    a = c["algorithm"]
    get_algorithm(a["name"])
    check_range("algorithm.T", a["T"], 0, 10_000)
    check_range("algorithm.latent.lr", a["latent"]["lr"], 0.0, None)
    check_range("optim.lr", c["optim"]["lr"], 0.0, None)
    spec = energy_spec(c)
    model = build_model_from_config(c, input_shape, num_classes, spec)
    lalr = make_lalr(c["lalr"]["rule"], **dict(c["lalr"].get("params") or {}))
    inference = Inference(a["T"], LatentOptim(**a["latent"]), lalr, a.get("latent_grad", "sample"), tol=a.get("tol"),
                          tol_on=a.get("tol_on", "energy"), min_steps=a.get("min_steps", 0))
    ctx = BuildContext(config=c, model=model, total_steps=steps_per_epoch * c["trainer"]["epochs"],
                       weight_optim=WeightOptim(**dict(c["optim"])), energy=spec, inference=inference,
                       runtime=build_runtime(c, model), lalr_weights=bool(a.get("lalr_weights", False)),
                       params=dict(a.get("params") or {}))
    return model, build_algorithm(a["name"], ctx)


def beta_schedule(a: dict, seed: int):
    """Per-epoch output nudging beta_e (PCX): ``constant``: beta; ``linear``: beta + beta_increase * e
    (sign kept, |beta_e| clipped to 1); ``random_sign`` (centred nudging): |beta| with a random sign
    drawn per epoch from the seed. Returns None when beta stays constant."""
    kind, beta, inc = a["beta_schedule"], float(a["beta"]), float(a["beta_increase"])
    check_choice("algorithm.beta_schedule", kind, ("constant", "linear", "random_sign"))
    if kind == "constant":
        return None
    if kind == "linear":
        sign = 1.0 if beta >= 0 else -1.0
        return lambda e: sign * min(abs(beta) + inc * e, 1.0)
    import numpy as np

    signs = np.random.default_rng(seed + 12345).choice([-1.0, 1.0], size=100_000)
    return lambda e: float(signs[e]) * min(abs(beta) + inc * e, 1.0)
