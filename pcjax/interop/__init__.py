"""Bridges to other JAX neural-network libraries.

``pcjax.interop.flax`` wraps ``flax.nnx`` and ``flax.linen`` modules as pcjax blocks
(``from_nnx``, ``from_linen``). flax is an optional dependency (``pip install pcjax[flax]``) and is
imported only when those functions are used.
"""

from __future__ import annotations

__all__ = ["from_linen", "from_nnx"]


def __getattr__(name: str):
    if name in __all__:
        from . import flax as _flax

        return getattr(_flax, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
