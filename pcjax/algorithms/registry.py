"""The algorithm registry: ``algorithm=<name>`` on the command line builds a registered algorithm.

A builder receives a ``BuildContext`` with the run's parts already made (model, weight optimiser,
energy, inference, runtime policy, the free-form ``algorithm.params``) and returns an ``Algorithm``::

    @register_algorithm("my_rule", defaults={"T": 4})
    def build_my_rule(ctx):
        return MyRule(ctx.inference, ctx.energy, ctx.weight_optim, ctx.total_steps, runtime=ctx.runtime)

Registering also makes ``algorithm=my_rule`` a Hydra choice (standard energy and constant LALR
unless ``groups`` says otherwise), so a plugin algorithm runs from the CLI, in ``-m`` sweeps and
under Optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..inference import Inference
from ..network import Network
from ..network_energy import EnergySpec
from ..optim import WeightOptim
from ..runtime import Runtime
from .base import Algorithm


@dataclass(frozen=True)
class BuildContext:
    """The parts a builder assembles an algorithm from."""

    config: dict            # the whole plain run config
    model: Network
    total_steps: int        # training steps of the run
    weight_optim: WeightOptim
    energy: EnergySpec
    inference: Inference
    runtime: Runtime
    lalr_weights: bool      # algorithm.lalr_weights
    params: dict            # algorithm.params: a custom algorithm's own hyper-parameters

    @property
    def algorithm(self) -> dict:
        """The ``algorithm`` config node."""
        return self.config["algorithm"]


Builder = Callable[[BuildContext], Algorithm]
_REGISTRY: dict[str, Builder] = {}


def register_algorithm(name: str, builder: Builder | None = None, *, defaults: dict | None = None,
                       groups: dict | None = None, overwrite: bool = False, hydra_config: bool = True):
    """Register ``builder`` under ``name`` (usable as a decorator); ``defaults`` are the values of the
    ``algorithm`` config node that ``algorithm=name`` selects, ``groups`` the config-group choices it
    implies (default ``{"energy": "gaussian", "lalr": "constant"}``). ``hydra_config=False``: the
    config is a file in ``conf/algorithm/`` (the built-in algorithms)."""

    def _register(fn: Builder) -> Builder:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
            raise ConfigError(f"algorithm {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = fn
        if hydra_config:
            _store_config(name, defaults or {}, {"energy": "gaussian", "lalr": "constant"} if groups is None else groups)
        return fn

    return _register if builder is None else _register(builder)


def _store_config(name: str, defaults: dict, groups: dict) -> None:
    try:
        from hydra.core.config_store import ConfigStore
    except ImportError:  # Hydra is only needed for the command line
        return
    node = {"defaults": [{f"override /{g}": v} for g, v in groups.items()],
            "algorithm": {"name": name, "label": name, **defaults}}
    ConfigStore.instance().store(group="algorithm", name=name, node=node, package="_global_")


def available_algorithms() -> tuple[str, ...]:
    """Names of every registered algorithm."""
    return tuple(sorted(_REGISTRY))


def get_algorithm(name: str) -> Builder:
    """The builder registered under ``name`` (clear error listing the valid names)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"algorithm.name={name!r} is not valid; valid choices: {', '.join(available_algorithms())}. "
                          "Register a new one with pcjax.register_algorithm (a plugin file loaded with plugins=[...]).") from None


def build_algorithm(name: str, ctx: BuildContext) -> Algorithm:
    """Build the algorithm ``name`` from ``ctx``."""
    algo = get_algorithm(name)(ctx)
    if not isinstance(algo, Algorithm):
        raise ConfigError(f"the builder of algorithm {name!r} returned {type(algo).__name__}, not a pcjax Algorithm")
    return algo


def algorithm_params(ctx: BuildContext, **defaults: Any) -> dict:
    """``algorithm.params`` merged over ``defaults``; a key not in ``defaults`` is an error."""
    unknown = sorted(set(ctx.params) - set(defaults))
    if unknown:
        raise ConfigError(f"algorithm.params {unknown} are not parameters of algorithm {ctx.algorithm['name']!r} "
                          f"(valid: {', '.join(sorted(defaults)) or 'none'})")
    return {**defaults, **ctx.params}
