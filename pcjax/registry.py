"""The one policy of pcjax's name registries (energy terms, LALR rules, models; the algorithm
registry applies the same rule): a name is registered once. Registering another object under a
taken name, a built-in's included, raises ``ConfigError`` naming the name, what holds it and the
fix (``overwrite=True``); registering the very same object again (a plugin imported twice) is fine."""

from __future__ import annotations

from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _describe(obj: Any) -> str:
    """``module.qualname`` of a registered object (its repr when it has none)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if name and module else repr(obj)


def register_into(registry: dict[str, Any], kind: str, name: str, obj: T, *, overwrite: bool = False) -> T:
    """Put ``obj`` into ``registry`` under ``name``; ``kind`` (e.g. ``"energy term"``) names the registry
    in the error raised when ``name`` already holds another object and ``overwrite`` is false."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a {kind} needs a non-empty string name, got {name!r}")
    held = registry.get(name)
    if held is not None and held is not obj and not overwrite:
        raise ConfigError(
            f"{kind} {name!r} is already registered (by {_describe(held)}); registering {_describe(obj)} under "
            f"the same name would silently change what {name!r} runs. Choose another name, or pass "
            "overwrite=True to replace it on purpose.")
    registry[name] = obj
    return obj
