"""Data parallelism over several devices (of one host, or of every process of a multi-process run,
see :mod:`pcjax.distributed`): a mesh with one ``data`` axis.

The training (and evaluation) batch is sharded over ``data``; parameters, optimiser states and
the device-resident dataset are replicated. Each device runs the per-sample inference of its
shard of the batch; the batch mean in the weight gradient becomes one all-reduce per weight step,
inserted by XLA's SPMD partitioner (no ``shard_map``, no ``pmap``). ``devices=1`` builds no mesh and
leaves every compiled function exactly as it is on one device.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .errors import ConfigError


def resolve_devices(devices) -> int:
    """The device count named by ``trainer.devices``: an integer >= 1 or ``all`` (every device; in a
    multi-process run, every device of every process)."""
    available = jax.device_count()
    if isinstance(devices, str):
        if devices.lower() == "all":
            return available
        try:
            devices = int(devices)
        except ValueError:
            raise ConfigError(f"trainer.devices must be an integer >= 1 or 'all', got {devices!r}") from None
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"trainer.devices must be an integer >= 1 or 'all', got {devices!r}")
    if devices > available:
        raise ConfigError(
            f"trainer.devices={devices} but only {available} {jax.default_backend()} device(s) exist; "
            f"use trainer.devices={available} (or trainer.devices=all)")
    return devices


@dataclass(frozen=True)
class DataParallel:
    """The mesh over the first ``n`` devices (every process's, in process order) and its two shardings."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "mesh", Mesh(jax.devices()[: self.n], ("data",)))

    @property
    def batch(self) -> NamedSharding:
        """Leading (batch) axis split over ``data``."""
        return NamedSharding(self.mesh, P("data"))

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device of the mesh."""
        return NamedSharding(self.mesh, P())

    def shard_batch(self, x):
        """``x`` (inside a compiled function) constrained to be split along its first axis."""
        return jax.lax.with_sharding_constraint(x, self.batch)

    def replicate(self, tree):
        """Every array leaf of ``tree`` placed on all devices of the mesh."""
        return jax.tree_util.tree_map(
            lambda a: jax.device_put(a, self.replicated) if eqx.is_array(a) else a, tree)


def data_parallel(devices, *, batch_size: int, eval_batch_size: int) -> DataParallel | None:
    """The :class:`DataParallel` for ``trainer.devices`` (None for one device), checking that both batch
    sizes split evenly over the devices."""
    n = resolve_devices(devices)
    if jax.process_count() > 1 and n != jax.device_count():
        raise ConfigError(
            f"a run of {jax.process_count()} processes trains on all {jax.device_count()} devices, got "
            f"trainer.devices={devices}; use trainer.devices=all")
    if n == 1:
        return None
    for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if size % n:
            lower, upper = (size // n) * n, -(-size // n) * n
            fix = f"{lower} or {upper}" if lower else f"{upper}"
            raise ConfigError(
                f"trainer.{name}={size} does not split evenly over trainer.devices={n}; "
                f"use a multiple of {n} (e.g. trainer.{name}={fix}) or change trainer.devices")
    return DataParallel(n)
