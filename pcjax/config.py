"""Structured configuration: typed dataclasses that Hydra validates at start-up, and their
conversion into pcjax objects. A typo in a key fails with the key and the config node named;
an out-of-range value fails with ``ConfigError`` naming the field.

``check_schema`` rejects keys the dataclasses do not declare wherever they come from (a
``+key=value`` override, an experiment file, a plain dict); ``validate_config`` checks the ranges
and choices of the fields whose values matter before anything is loaded or built."""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from .errors import ConfigError
from .optim import LAYERWISE, NAMES


@dataclass
class AugmentCfg:
    crop_padding: int = 0
    flip: bool = False
    crop_size: Optional[int] = None


@dataclass
class DatasetCfg:
    name: str = "digits"
    root: Optional[str] = None
    download: bool = True
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    label_mode: str = "fine"
    augment: AugmentCfg = field(default_factory=AugmentCfg)


@dataclass
class ModelCfg:
    name: str = "mlp"
    act: str = "gelu"
    width: int = 128
    depth: int = 3
    residual: bool = False
    backward: str = "auto"
    backward_from: int = 1
    init: str = "default"
    preact: bool = False
    width_multiplier: float = 1.0
    skip: str = "none"
    stem: str = "cifar"
    norm: str = "none"
    fc_hidden: int = 0
    aux_neurons: bool = False


@dataclass
class LatentCfg:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class AlgorithmCfg:
    name: str = "pc"
    label: str = "pc"
    variant: str = "pc"
    T: int = 8
    beta: float = 1.0
    latent: LatentCfg = field(default_factory=LatentCfg)
    latent_grad: str = "sample"
    eval_steps: int = 0
    nudge: str = "clamp"
    contrast: bool = False
    unroll: Any = "auto"
    error_front: Any = "auto"
    xla_fusion: Any = "auto"
    lalr_weights: bool = False
    loss: Optional[str] = None
    beta_schedule: str = "constant"
    beta_increase: float = 0.0
    compute_dtype: Optional[str] = None
    params: dict = field(default_factory=dict)
    tol: Optional[float] = None
    tol_on: str = "energy"
    min_steps: int = 0


@dataclass
class EnergyCfg:
    hidden: str = "gaussian"
    output: str = "gaussian"
    backward: str = "gaussian"
    alpha: Any = 1.0
    lam: Any = 0.0
    params: dict = field(default_factory=dict)


@dataclass
class LALRCfg:
    rule: str = "constant"
    params: dict = field(default_factory=dict)


@dataclass
class OptimCfg:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "warmup_cosine"
    warmup: float = 0.1
    peak_factor: float = 1.1
    end_factor: float = 0.1
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: Optional[float] = None
    layerwise: str = "none"


@dataclass
class TrainerCfg:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_fraction: float = 0.1
    chunks_per_epoch: int = 10
    loop: str = "auto"
    progress: bool = True
    resume: Any = False
    checkpoint: bool = True
    checkpoint_minutes: Optional[float] = 10.0
    extend_epochs: bool = False
    divergence_threshold: Optional[float] = 1e12
    compile_cache: Any = "auto"
    diagnostics: bool = False
    devices: Any = 1
    placement: str = "auto"
    device_memory_budget: Optional[int] = None
    distributed: str = "off"
    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    replicas: int = 1


@dataclass
class WandbCfg:
    mode: str = "offline"
    project: str = "pcjax"
    entity: Optional[str] = None
    name: Optional[str] = None
    group: Optional[str] = None
    tags: list = field(default_factory=list)


@dataclass
class TrackingCfg:
    backends: list = field(default_factory=lambda: ["jsonl", "wandb"])
    wandb: WandbCfg = field(default_factory=WandbCfg)


@dataclass
class ReferenceCfg:
    value: Optional[float] = None
    source: Optional[str] = None
    protocol: str = "pcx"


@dataclass
class Config:
    dataset: DatasetCfg = field(default_factory=DatasetCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    algorithm: AlgorithmCfg = field(default_factory=AlgorithmCfg)
    energy: EnergyCfg = field(default_factory=EnergyCfg)
    lalr: LALRCfg = field(default_factory=LALRCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    tracking: TrackingCfg = field(default_factory=TrackingCfg)
    reference: ReferenceCfg = field(default_factory=ReferenceCfg)
    name: Optional[str] = None
    seed: int = 0
    run_dir: Optional[str] = None
    plugins: list = field(default_factory=list)


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (``config_schema`` in conf/config.yaml), the
    ``${pid:}`` resolver (the process id) that makes default run directories unique and the
    ``${sqlite_in:DIR}`` resolver (the URL of ``DIR/optuna.db``, creating ``DIR``: Optuna opens its
    storage before Hydra creates the sweep directory)."""
    import os

    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="config_schema", node=Config)
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid())
    if not OmegaConf.has_resolver("sqlite_in"):
        OmegaConf.register_new_resolver("sqlite_in", _sqlite_in)


def _sqlite_in(directory: str, name: str = "optuna.db") -> str:
    """``sqlite:///ABS/DIR/NAME`` with ``DIR`` created (an absolute path, so workers started from other
    directories share the same file)."""
    from pathlib import Path

    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / name}"


def check_choice(field_name: str, value: str, choices) -> None:
    """Raise ``ConfigError`` naming the field when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{field_name}={value!r} is not valid; valid choices: {', '.join(sorted(choices))}")


def check_range(field_name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ``ConfigError`` naming the field when ``value`` lies outside [low, high]."""
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{field_name}={value} is out of range [{low}, {high}]")


def _optional_inner(tp):
    """``Optional[X]`` -> ``X``; anything else unchanged."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _schema_fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: _optional_inner(hints[f.name]) for f in fields(cls)}


def schema_keys(cls=None, prefix: str = "") -> list[str]:
    """Every dotted key the schema (the ``Config`` dataclasses) declares, nested groups included.
    Fields typed ``dict`` (e.g. ``lalr.params``) are free-form: their contents are not listed."""
    cls = Config if cls is None else cls
    out = []
    for name, tp in _schema_fields(cls).items():
        out.append(prefix + name)
        if is_dataclass(tp):
            out += schema_keys(tp, prefix + name + ".")
    return out


def check_schema(c: dict, cls=None) -> None:
    """Raise ``ConfigError`` for every key of ``c`` that the schema does not declare, naming the key
    and the closest valid one. ``c`` is a plain dict (e.g. a composed Hydra config); the allowed keys
    come from the dataclasses, so fields added to them are accepted without further changes.
    Free-form ``dict`` fields (``lalr.params``, ...) and ``Any``/``list`` values are not looked into."""
    cls = Config if cls is None else cls
    unknown: list[str] = []

    def walk(node: dict, schema, prefix: str) -> None:
        declared = _schema_fields(schema)
        for key, value in node.items():
            path = f"{prefix}{key}"
            if key not in declared:
                unknown.append(path)
            elif is_dataclass(declared[key]) and isinstance(value, dict):
                walk(value, declared[key], path + ".")

    walk(c, cls, "")
    if not unknown:
        return
    valid = schema_keys(cls)
    lines = []
    for path in unknown:
        close = difflib.get_close_matches(path, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        lines.append(f"unknown config key {path!r} (not a field of the schema in pcjax/config.py){hint}")
    raise ConfigError("\n".join(lines) if len(lines) == 1 else
                      f"{len(lines)} unknown config keys:\n  " + "\n  ".join(lines))


_MISSING = object()


class _Checker:
    """Collects the problems of one configuration, each naming its field."""

    def __init__(self, c: dict) -> None:
        self.c, self.problems = c, []

    def get(self, path: str):
        node = self.c
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def fail(self, path: str, value, why: str) -> None:
        self.problems.append(f"{path}={value!r} {why}")

    def integer(self, path: str, low: int | None = None, high: int | None = None, none_ok: bool = False) -> None:
        v = self.get(path)
        if v is _MISSING or (v is None and none_ok):
            return
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, v, "must be an integer" + (" or null" if none_ok else ""))
        elif (low is not None and v < low) or (high is not None and v > high):
            self.fail(path, v, _range_text(low, high))

    def number(self, path: str, low: float | None = None, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False, none_ok: bool = False, why: str = "") -> None:
        v = self.get(path)
        if v is _MISSING or (v is None and none_ok):
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(path, v, "must be a finite number" + (" or null" if none_ok else ""))
            return
        bad = ((low is not None and (v < low or (low_open and v == low)))
               or (high is not None and (v > high or (high_open and v == high))))
        if bad:
            self.fail(path, v, _range_text(low, high, low_open, high_open) + why)

    def choice(self, path: str, choices) -> None:
        v = self.get(path)
        if v is not _MISSING and v not in tuple(choices):
            self.fail(path, v, f"is not valid; valid choices: {', '.join(map(str, choices))}")

    def boolean(self, path: str) -> None:
        v = self.get(path)
        if v is not _MISSING and not isinstance(v, bool):
            self.fail(path, v, "must be true or false")


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if high is None:
        return f"must be {'>' if low_open else '>='} {low}"
    if low is None:
        return f"must be {'<' if high_open else '<='} {high}"
    return f"is out of range {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _energy_weights(ck: _Checker, path: str, *, not_all_zero: bool) -> None:
    v = ck.get(path)
    if v is _MISSING:
        return
    values = v if isinstance(v, (list, tuple)) else [v]
    if not values:
        ck.fail(path, v, "must be a number or a non-empty list of numbers")
        return
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            ck.fail(path, v, "must be a finite number or a list of finite numbers")
            return
    if any(x < 0 for x in values):
        ck.fail(path, v, "must be >= 0 (every weight of the energy; a negative weight makes the energy "
                         "unbounded below, so inference runs away instead of settling)")
    elif not_all_zero and all(x == 0 for x in values):
        ck.fail(path, v, "must not be all zero (the energy would not depend on the forward predictions)")


def _lalr_rule(ck: _Checker) -> None:
    """The LALR rule's name and parameters (each parameter within the range its rule declares)."""
    from .lalr import make_lalr

    rule, params = ck.get("lalr.rule"), ck.get("lalr.params")
    if rule is _MISSING:
        return
    try:
        make_lalr(rule, **(params if isinstance(params, dict) else {}))
    except ConfigError as err:
        ck.problems.append(str(err))


def _energy_terms(ck: _Checker) -> None:
    """The energy terms exist and ``energy.params`` are parameters they take, numbers where their
    defaults are numbers (the weights are checked on their own)."""
    from .energies import get_energy
    from .network_energy import EnergySpec

    e = ck.get("energy")
    if not isinstance(e, dict):
        return
    try:
        for which in ("hidden", "output", "backward"):
            if isinstance(e.get(which), str):
                try:
                    get_energy(e[which])
                except ConfigError as err:
                    raise ConfigError(f"energy.{which}: {err}") from None
        EnergySpec(e.get("hidden", "gaussian"), e.get("output", "gaussian"), e.get("backward", "gaussian"),
                   params=dict(e.get("params") or {}))
    except ConfigError as err:
        ck.problems.append(str(err))


def _model_options(ck: _Checker, overrides: Iterable[str] | None) -> None:
    """A model option the builder does not take, set explicitly (``overrides``) or to a value other
    than the schema default, is refused (``pcjax.models.model_options``)."""
    from dataclasses import asdict

    from .models import MODELS, explicit_model_keys, model_options

    model = ck.get("model")
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        return
    try:
        model_options(model["name"], {k: v for k, v in model.items() if k != "name"}, asdict(ModelCfg()),
                      explicit_model_keys(overrides))
    except ConfigError as err:
        ck.problems.append(str(err))


def _check_dataset(ck: _Checker) -> None:
    """``seed`` and the ``dataset`` node."""
    from .data import DATASETS

    ck.integer("seed", 0, 2**32 - 1)
    ck.choice("dataset.name", DATASETS)
    for key in ("limit_train", "limit_test"):
        ck.integer(f"dataset.{key}", 1, none_ok=True)
    ck.choice("dataset.label_mode", ("fine", "coarse"))
    ck.integer("dataset.augment.crop_padding", 0)
    ck.integer("dataset.augment.crop_size", 1, none_ok=True)


def _check_model(ck: _Checker, overrides: Iterable[str] | None) -> None:
    """The ``model`` node: ranges, choices, and options the chosen builder takes."""
    import inspect

    from .blocks import ACTIVATIONS
    from .models import MODELS
    from .models.resnet import STEMS
    from .models.topdown import BACKWARD
    from .models.vgg import SKIPS
    from .norm import NORMS

    ck.choice("model.name", sorted(MODELS))
    ck.integer("model.width", 1)
    ck.integer("model.depth", 1)
    ck.integer("model.backward_from", 0)
    ck.integer("model.fc_hidden", 0)
    ck.number("model.width_multiplier", 0.0, low_open=True)
    ck.choice("model.act", sorted(ACTIVATIONS))
    ck.choice("model.backward", ("auto", *BACKWARD))
    for key in ("residual", "preact", "aux_neurons"):
        ck.boolean(f"model.{key}")
    builder = MODELS.get(ck.get("model.name"))
    _model_options(ck, overrides)
    if builder is not None and getattr(builder, "__module__", "").startswith("pcjax.models"):
        accepted = inspect.signature(builder).parameters
        for key, choices in (("norm", NORMS), ("stem", STEMS), ("skip", SKIPS), ("init", ("default", "mup"))):
            if key in accepted:
                ck.choice(f"model.{key}", choices)


def _check_algorithm(ck: _Checker) -> None:
    """The ``algorithm``, ``lalr`` and ``energy`` nodes."""
    ck.integer("algorithm.T", 0)
    ck.integer("algorithm.eval_steps", 0)
    ck.number("algorithm.latent.lr", 0.0)
    ck.number("algorithm.latent.momentum", 0.0, 1.0, high_open=True)
    ck.number("algorithm.beta")  # finite: nan would be blamed on the learning rates at step 0
    ck.number("algorithm.beta_increase", 0.0)
    _lalr_rule(ck)
    _energy_terms(ck)
    _energy_weights(ck, "energy.alpha", not_all_zero=True)
    _energy_weights(ck, "energy.lam", not_all_zero=False)


def _check_optim(ck: _Checker) -> None:
    """The weight optimiser (``optim``)."""
    ck.choice("optim.name", NAMES)
    ck.choice("optim.layerwise", LAYERWISE)
    ck.number("optim.b1", 0.0, 1.0)
    ck.number("optim.b2", 0.0, 1.0)
    ck.choice("optim.schedule", ("warmup_cosine", "constant"))
    ck.number("optim.lr", 0.0)
    ck.number("optim.weight_decay", 0.0)
    ck.number("optim.warmup", 0.0, 1.0)
    ck.number("optim.peak_factor", 0.0, low_open=True)
    ck.number("optim.end_factor", 0.0)
    ck.number("optim.momentum", 0.0, 1.0)
    ck.number("optim.grad_clip", 0.0, low_open=True, none_ok=True)


def _check_trainer(ck: _Checker) -> None:
    """The ``trainer`` node (loop, checkpoints, devices, resume)."""
    from .distributed import MODES as DIST_MODES
    from .runtime import LOOPS
    from .streaming import PLACEMENTS

    ck.integer("trainer.epochs", 1)
    ck.integer("trainer.batch_size", 1)
    ck.integer("trainer.eval_batch_size", 1)
    ck.integer("trainer.chunks_per_epoch", 1)
    ck.integer("trainer.replicas", 1)
    ck.number("trainer.val_fraction", 0.0, 0.99)
    ck.choice("trainer.loop", ("auto", *LOOPS))
    ck.number("trainer.divergence_threshold", 0.0, low_open=True, none_ok=True)
    ck.number("trainer.checkpoint_minutes", 0.0, none_ok=True)
    for key in ("progress", "checkpoint", "extend_epochs", "diagnostics"):
        ck.boolean(f"trainer.{key}")
    devices = ck.get("trainer.devices")
    if devices is not _MISSING and not (devices == "all" or (isinstance(devices, int) and not isinstance(devices, bool)
                                                           and devices >= 1)):
        ck.fail("trainer.devices", devices, "must be an integer >= 1 or 'all'")
    ck.choice("trainer.distributed", DIST_MODES)
    ck.choice("trainer.placement", PLACEMENTS)
    ck.integer("trainer.device_memory_budget", 1, none_ok=True)
    ck.integer("trainer.num_processes", 1, none_ok=True)
    ck.integer("trainer.process_id", 0, none_ok=True)
    resume = ck.get("trainer.resume")
    if resume is not _MISSING and not (resume is None or isinstance(resume, (bool, str))):
        ck.fail("trainer.resume", resume, "must be false, true/latest or the path of a run directory")


def _check_tracking(ck: _Checker) -> None:
    """The ``tracking`` node: known backends and wandb mode."""
    from .tracking import BACKENDS, WandbTracker

    backends = ck.get("tracking.backends")
    if backends is not _MISSING:
        names = backends.split(",") if isinstance(backends, str) else backends
        if not isinstance(names, (list, tuple)):
            ck.fail("tracking.backends", backends, "must be a list of backend names")
        else:
            bad = [n for n in names if str(n).strip().lower() not in BACKENDS]
            if bad:
                ck.fail("tracking.backends", backends, f"names unknown backend(s) {bad}; valid choices: "
                                                       f"{', '.join(sorted(BACKENDS))}")
    ck.choice("tracking.wandb.mode", WandbTracker.MODES)


def validate_config(c: dict, overrides: Iterable[str] | None = None) -> None:
    """Check the ranges and choices of a plain config dict before a run starts; raise one
    ``ConfigError`` naming every invalid field. Plugins must be loaded first (their models,
    energies and trackers count as valid choices). ``overrides`` (the command line's) name the
    keys set explicitly: a model option the builder does not take is refused when set there."""
    ck = _Checker(c)
    _check_dataset(ck)
    _check_model(ck, overrides)
    _check_algorithm(ck)
    _check_optim(ck)
    _check_trainer(ck)
    _check_tracking(ck)
    if ck.problems:
        if len(ck.problems) == 1:
            raise ConfigError(ck.problems[0])
        raise ConfigError(f"{len(ck.problems)} invalid config values:\n  " + "\n  ".join(ck.problems))


# ----------------------------------------------------------------- command-line overrides, before Hydra
#: How a name from a plugin is chosen when it is not a config file of its group.
_PLUGIN_CHOICE = {
    "algorithm": "an algorithm a plugin registers (pj.register_algorithm) is a choice only once the plugin is "
                 "loaded on the same command line: 'plugins=[my_algorithm.py]' algorithm={name}",
    "model": "a model a plugin registers (pj.register_model) is chosen with model.name={name} "
             "('plugins=[my_model.py]' model.name={name})",
    "energy": "an energy term a plugin registers (pj.register_energy) is chosen per node with "
              "energy.hidden={name} and/or energy.output={name} ('plugins=[my_energy.py]')",
    "lalr": "a rule a plugin registers (pj.register_lalr) is chosen with lalr.rule={name} ('plugins=[my_rule.py]')",
}


def group_choices(group: str) -> list[str]:
    """The config files of ``group`` (``conf/<group>/*.yaml``, shipped as ``pcjax.conf``) and the
    choices registered with Hydra's ConfigStore (a plugin's algorithms)."""
    import importlib.resources

    from hydra.core.config_store import ConfigStore

    names = set()
    folder = importlib.resources.files("pcjax.conf") / group
    if folder.is_dir():
        names |= {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
    stored = ConfigStore.instance().repo.get(group)
    if isinstance(stored, dict):
        names |= {n[:-5] for n in stored if n.endswith(".yaml")}
    return sorted(names)


def _config_groups() -> set[str]:
    import importlib.resources

    root = importlib.resources.files("pcjax.conf")
    return {p.name for p in root.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")}


def _schema_path(path: str) -> tuple[str, str | None]:
    """Where the dotted ``path`` lands in the schema: ``("field", None)`` for a declared key,
    ``("free", prefix)`` for a key inside a free-form field ``prefix`` (``algorithm.params``, a list or
    ``Any`` value), ``("unknown", None)`` for a key the schema does not declare."""
    cls, parts = Config, path.split(".")
    for i, part in enumerate(parts):
        declared = _schema_fields(cls)
        if part not in declared:
            return "unknown", None
        tp = declared[part]
        if i == len(parts) - 1:
            return "field", None
        if not is_dataclass(tp):
            return "free", ".".join(parts[: i + 1])
        cls = tp
    return "field", None


def _unknown_key(path: str, value_text: str, added: bool) -> str:
    close = difflib.get_close_matches(path, schema_keys(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r} ({close[0]}={value_text})?" if close else \
        " (`pcjax train --help` lists every key)"
    extra = "" if added else " Adding it with + would not help: the run refuses keys outside the schema."
    return f"unknown config key {path!r} (not a field of the schema in pcjax/config.py){hint}{extra}"


def _unknown_choice(group: str, name: str) -> str:
    choices = group_choices(group)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {group}={close[0]}?" if close else "."
    shown = ", ".join(choices) if len(choices) <= 20 else f"{len(choices)} files in conf/{group}/"
    msg = f"{group}={name}: no such {group} config (choices: {shown}){hint}"
    if group in _PLUGIN_CHOICE:
        text = _PLUGIN_CHOICE[group].format(name=name)
        msg += f" {text[0].upper()}{text[1:]}."
    return msg


def _free_form_problems(pending: list, others: list[str]) -> list[str]:
    """Overrides of keys inside free-form config nodes (``algorithm.params.k=2``, no ``+``): Hydra
    changes only keys the composed config has, so compose it without them and name the keys the node
    does have (with the closest one) instead of Hydra's advice to add the key with ``+``; a number
    the node declares must stay a number."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, OmegaConf

    register_configs()  # conf/config.yaml composes with the schema: without it nothing would be checked
    try:
        if GlobalHydra.instance().is_initialized():
            cfg = compose("config", overrides=others)
        else:
            with initialize_config_module(config_module="pcjax.conf", version_base=None):
                cfg = compose("config", overrides=others)
    except Exception:  # noqa: BLE001 - another override is wrong: Hydra reports it in its own words
        return []
    problems = []
    for o in pending:
        path = o.key_or_group
        parent, _, leaf = path.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if not isinstance(node, DictConfig):
            continue
        value = o.value()
        text = o.get_value_element_as_str()
        if leaf in node:
            default = node[leaf]
            if (isinstance(default, (int, float)) and not isinstance(default, bool)
                    and (isinstance(value, bool) or not isinstance(value, (int, float)))):
                problems.append(f"{path}={text}: must be a number (the default in the composed config is "
                                f"{default!r}); e.g. {path}={default!r}")
            continue
        have = sorted(map(str, node.keys()))
        owner = {"algorithm.params": f"algorithm {cfg.algorithm.label!r} (algorithm.name={cfg.algorithm.name})",
                 "lalr.params": f"lalr.rule={cfg.lalr.rule}", "energy.params": "the chosen energy terms"}.get(parent,
                                                                                                          parent)
        close = difflib.get_close_matches(leaf, have, n=1, cutoff=0.6)
        if have:
            msg = f"{path}={text}: {leaf!r} is not a parameter that {owner} sets (it sets: {', '.join(have)})"
            msg += f"; did you mean {parent}.{close[0]}={text}?" if close else "."
        else:
            msg = f"{path}={text}: {owner} sets no {parent} in its config"
            msg += "" if parent != "algorithm.params" else " (the built-in pc and bp take none)"
            msg += "."
        msg += (f" To pass a parameter its config does not list, write +{path}={text} (the component then checks "
                "that it takes it)")
        problems.append(msg)
    return problems


def check_overrides(overrides: Iterable[str]) -> None:
    """Check command-line overrides before Hydra composes the configuration, so that a typo gets the
    closest valid key (``trainer.epoch=1`` -> ``trainer.epochs``) instead of Hydra's advice to add the
    key with ``+`` (which the schema check would then refuse), a config-group choice that does not
    exist says how a plugin's choice is loaded, and a key inside a free-form node
    (``algorithm.params.tauu``) names the keys that node has. Plugins must be loaded first. Raises
    one ``ConfigError`` naming every problem; overrides Hydra cannot parse are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [str(o) for o in overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports its own syntax errors
        return
    groups, problems, pending, others, sweeping = _config_groups(), [], [], [], False
    for text, o in zip(overrides, parsed):
        key = o.key_or_group
        sweeping |= o.is_sweep_override()
        if o.is_delete() or o.package is not None or key.startswith("hydra") or "/" in key:
            others.append(text)
            continue
        if key in groups:
            others.append(text)
            if o.is_sweep_override():
                try:
                    names = list(o.sweep_string_iterator())
                except Exception:  # noqa: BLE001 - glob(...) and the like: Hydra expands them
                    continue
            else:
                names = [o.get_value_element_as_str()]
            choices = group_choices(key)
            problems += [_unknown_choice(key, n) for n in names if n not in choices and n != "null"]
            continue
        where, _ = _schema_path(key)
        if where == "unknown":
            problems.append(_unknown_key(key, o.get_value_element_as_str(), o.is_add() or o.is_force_add()))
        elif where == "free" and not (o.is_add() or o.is_force_add()):
            pending.append(o)
            continue
        others.append(text)
    if pending and not sweeping and not problems:
        problems += _free_form_problems(pending, others)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems with the command line:\n  " + "\n  ".join(problems))
