"""Use flax modules as pcjax blocks.

``from_nnx(module)`` wraps a ``flax.nnx`` module and ``from_linen(module, example_input, key)`` a
``flax.linen`` module as an equinox module whose array leaves are the flax parameters, so that a
wrapped module is a block like any other: it can sit between two latent nodes of a ``Network``
(or serve as a skip projection or a top-down predictor), and PC and backprop train its
parameters with the weight optimiser.

* nnx: ``nnx.split(module, nnx.Param, ...)`` gives a static graph definition, the parameters
  (stored as a nested dict of arrays in ``block.params``, the layout of
  ``nnx.State.to_pure_dict()``) and the remaining state; ``block(x)`` merges them into a fresh
  module and calls it. ``block.to_nnx()`` returns the module with the current parameters.
* linen: ``module.init(key, example_input)`` creates the variables; ``block.params`` holds the
  ``"params"`` collection and ``block(x) = module.apply({"params": ..., ...}, x)``.

Blocks are pure functions of their input and parameters and act on batched inputs (leading
batch axis). Non-parameter variables (batch statistics, RNG streams, other collections) are
frozen constants: they are neither trained nor updated by a call, so put stateful layers in
inference mode (``nnx.BatchNorm(use_running_average=True)``, ``nnx.Dropout(deterministic=True)``,
``deterministic=True`` for linen).

``block.linear`` (the bias- and activation-free linear map that tied top-down predictors
transpose) exists when it is well defined: for ``nnx.Linear`` / ``linen.Dense``, for an
``nnx.Sequential`` whose only parametrised layer is an ``nnx.Linear`` (followed by parameter-free
functions such as activations, and preceded by reshapes), and for any module that defines a
``linear(x)`` method of its own. Otherwise ``hasattr(block, "linear")`` is false.

flax is an optional dependency: ``pip install pcjax[flax]``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

__all__ = ["LinenBlock", "NNXBlock", "from_linen", "from_nnx"]

_INSTALL_HINT = "pcjax.interop.flax needs flax: pip install pcjax[flax]"


def _nnx():
    try:
        from flax import nnx
    except ImportError as err:  # pragma: no cover - exercised only without flax
        raise ImportError(_INSTALL_HINT) from err
    return nnx


def _linen():
    try:
        import flax.linen as nn
    except ImportError as err:  # pragma: no cover - exercised only without flax
        raise ImportError(_INSTALL_HINT) from err
    return nn


class _Frozen:
    """A constant carried in a static field (hashed by identity, so it never forces a retrace)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return "_Frozen(...)"


def _dot_last(x: Array, kernel: Array, precision=None, dot_general=jax.lax.dot_general) -> Array:
    return dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


# ------------------------------------------------------------------------------------------ nnx
def _nnx_linear_fn(nnx, module) -> str | None:
    """How ``linear`` is computed for this nnx module: "method", "kernel", "sequential" or None."""
    if callable(getattr(type(module), "linear", None)):
        return "method"
    if isinstance(module, nnx.Linear):
        return "kernel"
    if isinstance(module, nnx.Sequential):
        layers = list(module.layers)
        with_params = [i for i, layer in enumerate(layers) if isinstance(layer, nnx.Module)]
        if len(with_params) == 1 and isinstance(layers[with_params[0]], nnx.Linear):
            return "sequential"
    return None


def _nnx_linear(layer, x: Array) -> Array:
    kernel = layer.kernel[...]
    x, kernel = layer.promote_dtype((x, kernel), dtype=layer.dtype)
    return _dot_last(x, kernel, layer.precision, layer.dot_general)


class NNXBlock(eqx.Module):
    """A ``flax.nnx`` module as a pcjax block; build it with :func:`from_nnx`.

    ``params`` is the nested dict of parameter arrays (``nnx.State.to_pure_dict()`` layout, e.g.
    ``params["kernel"]``, ``params["layers"][1]["bias"]``); these are the trainable leaves.
    """

    params: dict
    graphdef: Any = eqx.field(static=True)
    treedef: Any = eqx.field(static=True)
    rest: _Frozen = eqx.field(static=True)
    linear_kind: str | None = eqx.field(static=True)

    def to_nnx(self):
        """A fresh ``nnx`` module holding the current parameters (and the frozen other state)."""
        nnx = _nnx()
        state = jax.tree_util.tree_unflatten(self.treedef, jax.tree_util.tree_leaves(self.params))
        rest = jax.tree_util.tree_map(lambda a: a, self.rest.value)  # fresh variables: calls may mutate them
        return nnx.merge(self.graphdef, state, rest)

    def __call__(self, x: Array) -> Array:
        """Merge the parameters into the module and apply it to the batched input ``x``."""
        return self.to_nnx()(x)

    @property
    def linear(self):
        """The linear part of the block (no bias, no activation); absent when not well defined."""
        if self.linear_kind is None:
            raise AttributeError(
                "this flax block has no well-defined linear part; define a linear(x) method on the "
                "nnx module to use tied top-down weights"
            )

        def linear(x: Array) -> Array:
            module = self.to_nnx()
            if self.linear_kind == "method":
                return module.linear(x)
            if self.linear_kind == "kernel":
                return _nnx_linear(module, x)
            nnx = _nnx()
            for layer in module.layers:
                if isinstance(layer, nnx.Linear):
                    return _nnx_linear(layer, x)
                x = layer(x)
            raise AssertionError("unreachable")  # pragma: no cover

        return linear


def from_nnx(module) -> NNXBlock:
    """Wrap a ``flax.nnx`` module as a pcjax block (an equinox module).

    The ``nnx.Param`` variables become the block's trainable arrays; every other variable is
    frozen. The module is copied: training the block does not modify ``module``
    (use ``block.to_nnx()`` to get a module with the trained parameters).

    Example::

        from flax import nnx
        block = from_nnx(nnx.Sequential(nnx.Linear(64, 128, rngs=nnx.Rngs(0)), jax.nn.gelu))
    """
    nnx = _nnx()
    if not isinstance(module, nnx.Module):
        raise TypeError(f"from_nnx expects a flax.nnx.Module, got {type(module).__name__}")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    pure = nnx.to_pure_dict(params) if hasattr(nnx, "to_pure_dict") else params.to_pure_dict()
    leaves, treedef = jax.tree_util.tree_flatten(params)
    pure_leaves = jax.tree_util.tree_leaves(pure)
    if len(leaves) != len(pure_leaves) or any(a is not b for a, b in zip(leaves, pure_leaves)):
        raise NotImplementedError(
            f"cannot wrap {type(module).__name__}: its parameter state does not flatten in the same order "
            "as its pure-dict form"
        )
    pure = jax.tree_util.tree_map(jnp.asarray, pure)
    return NNXBlock(pure, graphdef, treedef, _Frozen(rest), _nnx_linear_fn(nnx, module))


# ---------------------------------------------------------------------------------------- linen
class LinenBlock(eqx.Module):
    """A ``flax.linen`` module as a pcjax block; build it with :func:`from_linen`.

    ``params`` is the module's ``"params"`` collection (trainable); other collections are frozen.
    """

    params: dict
    module: Any = eqx.field(static=True)
    rest: _Frozen = eqx.field(static=True)
    linear_kind: str | None = eqx.field(static=True)

    @property
    def variables(self) -> dict:
        """The full variable dict for ``module.apply``: ``{"params": params, **other collections}``."""
        return {"params": self.params, **self.rest.value}

    def __call__(self, x: Array) -> Array:
        """``module.apply(variables, x)`` on the batched input ``x``."""
        return self.module.apply(self.variables, x)

    @property
    def linear(self):
        """The linear part of the block (no bias, no activation); absent when not well defined."""
        if self.linear_kind is None:
            raise AttributeError(
                "this flax block has no well-defined linear part; define a linear(x) method on the "
                "linen module to use tied top-down weights"
            )

        def linear(x: Array) -> Array:
            if self.linear_kind == "method":
                return self.module.apply(self.variables, x, method="linear")
            kernel = self.params["kernel"]
            dtype = self.module.dtype or jnp.result_type(x, kernel)
            return _dot_last(x.astype(dtype), kernel.astype(dtype), self.module.precision)

        return linear


def from_linen(module, example_input: Array | jax.ShapeDtypeStruct, key: PRNGKeyArray) -> LinenBlock:
    """Wrap a ``flax.linen`` module as a pcjax block, initialising it on ``example_input``.

    ``example_input`` is a batched array (or ``jax.ShapeDtypeStruct``) shaped like the node the
    block reads; ``key`` seeds ``module.init``.

    Example::

        import flax.linen as nn
        block = from_linen(nn.Dense(128), jnp.zeros((1, 64)), jax.random.PRNGKey(0))
    """
    nn = _linen()
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_linen expects a flax.linen.Module, got {type(module).__name__}")
    if isinstance(example_input, jax.ShapeDtypeStruct):
        example_input = jnp.zeros(example_input.shape, example_input.dtype)
    variables = dict(module.init(key, example_input))
    if "params" not in variables:
        variables["params"] = {}
    params = jax.tree_util.tree_map(jnp.asarray, dict(variables.pop("params")))
    if callable(getattr(type(module), "linear", None)):
        kind = "method"
    elif isinstance(module, nn.Dense):
        kind = "kernel"
    else:
        kind = None
    return LinenBlock(params, module, _Frozen(variables), kind)
