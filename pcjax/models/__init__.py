"""Model registry: ``build_model(name, input_shape, num_classes, key=..., **options)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

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


def builder_options(builder: Callable[..., Network]) -> tuple[tuple[str, ...], bool]:
    """(the keyword options ``builder`` names, besides ``key``; whether it also takes ``**options``)."""
    params = inspect.signature(builder).parameters.values()
    named = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "key")
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def model_options(name: str, model: dict, defaults: dict, explicit: Iterable[str] = ()) -> dict:
    """The options of the config node ``model`` (without ``name``) that model ``name``'s builder gets:
    those it names. A key it does not take whose value differs from the schema default (``defaults``)
    or that was set explicitly (``explicit``: key names, e.g. from ``model.act=relu`` on the command
    line) raises ``ConfigError`` naming the keys and the options the builder takes, instead of being
    dropped while the run's record lists it. A builder with ``**options`` also gets such keys."""
    named, var_keyword = builder_options(MODELS[name])
    explicit = set(explicit)
    options = {k: v for k, v in model.items() if k in named}
    meant = {k: v for k, v in model.items() if k != "name" and k not in named
             and (k in explicit or k not in defaults or v != defaults[k])}
    if var_keyword:
        return {**options, **meant}
    if meant:
        raise ConfigError(_not_options(name, meant, named))
    return options


def _not_options(name: str, meant: dict, named: tuple[str, ...]) -> str:
    """The message refusing the options ``meant`` that model ``name``'s builder does not take."""
    one = len(meant) == 1
    it = "it" if one else "them"
    keys = " and ".join(f"model.{k}={v!r}" for k, v in meant.items())
    builder = MODELS[name]
    return (f"{keys}: not {'an option' if one else 'options'} of model {name!r}; its builder "
            f"{builder.__module__}.{builder.__qualname__} would ignore {it} while the run's record listed {it} "
            f"as used. Model {name!r} takes: {', '.join(named) or 'no options'}. Remove {it}, or choose a model "
            f"that takes {it} (registered models: {', '.join(sorted(MODELS))}).")


def explicit_model_keys(overrides: Iterable[str] | None) -> set[str]:
    """The ``model`` keys a list of command-line overrides sets (``model.act=relu`` -> ``act``)."""
    keys = set()
    for arg in overrides or ():
        key = str(arg).split("=", 1)[0].lstrip("+~")
        if key.startswith("model.") and key.count(".") == 1:
            keys.add(key.split(".", 1)[1])
    return keys


__all__ = ["MODELS", "build_model", "builder_options", "explicit_model_keys", "model_options", "register_model", "mlp"]
