"""Datasets larger than device memory: the batches stream from the host.

``trainer.placement`` chooses where the uint8 dataset lives:

* ``device``: every split is put on the device(s) once (the default path; shuffling, crops and flips
  run inside the compiled epoch);
* ``host``: the splits stay in host memory (a NumPy array, or a memory-mapped ``.npy`` file) and every
  batch is gathered there and copied to the device(s), split over the mesh with several devices;
* ``auto`` (default): ``host`` when the dataset's bytes exceed ``trainer.device_memory_budget`` (bytes;
  by default 60 % of the first device's memory limit when JAX reports one, as on GPUs; no limit on CPU).

The host path changes nothing but where the bytes are: the batches follow the same epoch plan (fit's
permutation and keys from the seed), the same per-sample augmentation and normalisation run inside
the same compiled step, so its losses and parameters equal the device path's (tested bit for bit),
and a run resumes from its last checkpoint exactly as on the device path. The batches are read by a
``grain`` pipeline (``MapDataset`` over the epoch's batch indices, ``to_iter_dataset`` with reader
threads and a prefetch buffer), and each one is put on the device(s) one step ahead of its use.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from .errors import ConfigError

PLACEMENTS = ("auto", "device", "host")
BUDGET_FRACTION = 0.6


def dataset_bytes(*arrays) -> int:
    """Bytes of the given arrays (the dataset's splits)."""
    return int(sum(a.nbytes for a in arrays))


def default_budget() -> int | None:
    """60 % of the first device's memory limit when JAX reports one (GPU, TPU); None (no limit) else."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics (CPU)
        stats = {}
    limit = stats.get("bytes_limit")
    return int(BUDGET_FRACTION * limit) if limit else None


def choose_placement(placement: str, nbytes: int, budget: int | None) -> str:
    """``device`` or ``host`` for ``trainer.placement`` given the dataset's size and the budget."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"trainer.placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement != "auto":
        return placement
    budget = default_budget() if budget is None else budget
    return "host" if budget is not None and nbytes > budget else "device"


class HostBatches:
    """The training batches of one epoch, gathered on the host by a grain pipeline and put on the
    device(s) one step ahead: iterating yields ``(x, y)`` device arrays for the plan's valid steps, in
    the plan's order."""

    def __init__(self, train_x: np.ndarray, train_y: np.ndarray, perm: np.ndarray, valid: np.ndarray,
                 sharding=None, *, threads: int = 4, prefetch: int = 8):
        try:
            import grain
        except ImportError as err:
            raise ConfigError("streaming batches from the host (trainer.placement=host, or auto over the memory "
                              "budget) needs grain: pip install 'pcjax[stream]'") from err
        self.rows = perm[valid]  # (steps, B): the epoch's batches, in order
        self.sharding = sharding
        source = grain.MapDataset.range(self.rows.shape[0]).map(
            lambda i: (np.asarray(train_x[self.rows[i]]), np.asarray(train_y[self.rows[i]])))
        self.dataset = source.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))

    def _put(self, batch):
        x, y = batch
        if self.sharding is None:
            return jax.device_put(x), jax.device_put(y)
        return jax.device_put(x, self.sharding), jax.device_put(y, self.sharding)

    def __iter__(self) -> Iterator[tuple[jax.Array, jax.Array]]:
        it = iter(self.dataset)
        ahead = next(it, None)
        ahead = None if ahead is None else self._put(ahead)
        while ahead is not None:
            current = ahead
            nxt = next(it, None)
            ahead = None if nxt is None else self._put(nxt)  # the copy overlaps the current step
            yield current


def host_accuracy(evaluate, state, xs: np.ndarray, ys: np.ndarray, batch_size: int, sharding=None) -> float:
    """Accuracy on a host-resident split: one compiled evaluation per batch of ``batch_size`` rows (the
    last one padded and masked), the correct counts summed."""
    n = xs.shape[0]
    correct = 0
    index = np.arange(batch_size, dtype=np.int32)[None]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = np.arange(start, start + batch_size) % n  # padding rows repeat, masked out
        mask = (np.arange(batch_size) < stop - start)[None]
        xb, yb = np.asarray(xs[rows]), np.asarray(ys[rows])
        if sharding is not None:
            xb, yb = jax.device_put(xb, sharding), jax.device_put(yb, sharding)
        frac = float(evaluate(state, xb, yb, index, mask))
        correct += round(frac * (stop - start))
    return correct / n
