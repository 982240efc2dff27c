"""Model registry: ``build_model(name, input_shape, num_classes, key=..., **options)``."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..network import Network
from ..registry import register_into
from .mlp import mlp
from .resnet import resnet18
from .small_cnn import small_cnn
from .vgg import vgg5, vgg7, vgg9, vgg11, vgg13, vgg16, vgg19

MODELS: dict[str, Callable[..., Network]] = {
    "mlp": mlp,
    "vgg5": vgg5, "vgg7": vgg7, "vgg9": vgg9, "vgg11": vgg11, "vgg13": vgg13, "vgg16": vgg16, "vgg19": vgg19,
    "resnet18": resnet18,
    "mnist_cnn": small_cnn,
}


def register_model(name: str, builder: Callable[..., Network], *, overwrite: bool = False) -> Callable[..., Network]:
    """Register a model builder ``builder(input_shape, num_classes, *, key, **options) -> Network``; a
    name already taken by another builder, a built-in's included, raises ``ConfigError`` unless ``overwrite``."""
    return register_into(MODELS, "model", name, builder, overwrite=overwrite)


def build_model(name: str, input_shape, num_classes: int, *, key, **options) -> Network:
    """Build a registered model by name (clear error listing valid names)."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid choices: {', '.join(sorted(MODELS))}") from None
    try:
        return builder(tuple(input_shape), num_classes, key=key, **options)
    except TypeError as err:
        raise ConfigError(f"invalid options for model {name!r}: {err}") from None


__all__ = ["MODELS", "build_model", "register_model", "mlp"]
