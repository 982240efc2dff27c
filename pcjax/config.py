"""Structured configuration: typed dataclasses that Hydra validates at start-up, and their
conversion into pcjax objects. A typo in a key fails with the key and the config node named;
an out-of-range value fails with ``ConfigError`` naming the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError


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
    lalr_weights: bool = False
    loss: Optional[str] = None
    beta_schedule: str = "constant"
    beta_increase: float = 0.0
    compute_dtype: Optional[str] = None
    params: dict = field(default_factory=dict)


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
    grad_clip: Optional[float] = None


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


@dataclass
class WandbCfg:
    mode: str = "offline"
    project: str = "pcjax"
    entity: Optional[str] = None


@dataclass
class TrackingCfg:
    backends: list = field(default_factory=lambda: ["jsonl"])
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
    """Register the schema with Hydra's ConfigStore (``config_schema`` in conf/config.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=Config)


def check_choice(field_name: str, value: str, choices) -> None:
    """Raise ``ConfigError`` naming the field when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{field_name}={value!r} is not valid; valid choices: {', '.join(sorted(choices))}")


def check_range(field_name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ``ConfigError`` naming the field when ``value`` lies outside [low, high]."""
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{field_name}={value} is out of range [{low}, {high}]")
