"""fit(): the epoch loop over a device-resident dataset.

The uint8 dataset is put on the device once. Each epoch draws a permutation from
fold_in(data_key(seed), epoch) (a key stream apart from the model's initialisation keys) and runs the training steps as ``lax.scan`` over index batches inside one
compiled function (split into a few chunks only so that a progress bar can advance); the
per-sample augmentation and normalisation run inside it. ``loop="step"`` instead dispatches one
compiled step per batch from Python (same batches, keys and results): XLA:CPU compiles convolution
gradients inside a loop whose carry holds the weights to a slow generic kernel (4-30x slower than the
same step compiled on its own), so ``loop="auto"`` uses per-step dispatch for convnets on CPU. A step whose energy turns non-finite
(or whose |energy| or |loss| exceeds ``divergence_threshold``) is not applied: training stops with a
``DivergenceError`` naming the batch, inference step and layer (or the threshold), and the last
checkpoint and record stay as they were at the end of the previous epoch; only the record's
``status`` and ``divergence`` fields change. A resumed run continues the record it finds in the run
directory (its summary, inference trace and config are kept).

Start-up is compiled up front and reported apart: the training step (or chunk), the evaluation on
the test and validation splits and the epoch's permutation and keys (one compiled function whose
results are used on the host) compile before the first epoch, so epoch seconds hold no compilation;
``summary.compile_seconds`` is that compilation and ``summary.time_to_first_step_seconds`` the time
from ``fit`` being called to the first step (data placement included).
"""

from __future__ import annotations

import functools
import logging
import math
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .collapse import describe_collapse, find_collapse
from .compile_cache import cache_counts
from .data import ArrayDataset, split_validation
from .data.pipeline import AugmentSpec, augment, center_crop, epoch_permutation, eval_batches, normalize
from .errors import ConfigError, DivergenceError

log = logging.getLogger(__name__)


LOOPS = ("auto", "scan", "step")

#: ``fold_in`` constant of a run's data stream (epoch permutations, augmentation keys). The model's
#: initialisation splits ``PRNGKey(seed)`` itself, and ``split(key, n)[i] == fold_in(key, i)``, so the
#: data stream is folded in with a constant far beyond any number of keys a model splits.
DATA_STREAM = 0x5EEDDA7A


def data_key(seed: int) -> jax.Array:
    """The key of a run's epoch permutations and augmentation keys: ``fold_in(PRNGKey(seed), DATA_STREAM)``,
    independent of every key the model's initialisation draws from ``PRNGKey(seed)``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), DATA_STREAM)


def conv_on_cpu(model) -> bool:
    """True when ``model`` has convolution blocks and JAX runs on the CPU: XLA:CPU compiles
    convolution gradients inside compiled loops to a slow generic kernel, so loops over such steps
    are better unrolled (inference) or dispatched from Python (epoch)."""
    from .blocks import Conv

    has_conv = any(isinstance(leaf, Conv) for leaf in jax.tree_util.tree_leaves(
        model, is_leaf=lambda n: isinstance(n, Conv)))
    return has_conv and jax.default_backend() == "cpu"


def resolve_loop(loop: str, model) -> str:
    """``auto`` -> ``step`` on CPU for models with convolutions (XLA:CPU runs weight-carrying
    loops over convolutions on a slow path), else ``scan``."""
    if loop != "auto":
        return loop
    return "step" if conv_on_cpu(model) else "scan"


@dataclass(frozen=True)
class TrainerConfig:
    """Epoch-loop settings."""

    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_fraction: float = 0.1
    seed: int = 0
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    chunks_per_epoch: int = 10
    progress: bool = True
    run_dir: str | None = None
    resume: bool = False
    checkpoint: bool = True
    keep_checkpoints: int = 2
    checkpoint_minutes: float | None = 10.0
    beta_schedule: Callable[[int], float] | None = None
    loop: str = "auto"
    divergence_threshold: float | None = 1e12
    diagnostics: bool = False
    devices: int | str = 1
    placement: str = "auto"
    device_memory_budget: int | None = None

    def __post_init__(self):
        if self.loop not in LOOPS:
            raise ConfigError(f"trainer.loop must be one of {LOOPS}, got {self.loop!r}")
        if self.epochs < 1:
            raise ConfigError(f"trainer.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"trainer.batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"trainer.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.chunks_per_epoch < 1:
            raise ConfigError(f"trainer.chunks_per_epoch must be >= 1, got {self.chunks_per_epoch}")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes >= 0:
            raise ConfigError(f"trainer.checkpoint_minutes must be >= 0 or null, got {self.checkpoint_minutes}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"trainer.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.divergence_threshold is not None and not self.divergence_threshold > 0:
            raise ConfigError(f"trainer.divergence_threshold must be > 0 or null, got {self.divergence_threshold}")


def _write_json_atomic(path: Path, obj: Any) -> None:
    from .runs import write_json_atomic

    write_json_atomic(path, obj)


def _to_float(x) -> float | list:
    a = np.asarray(x)
    return a.tolist() if a.ndim else float(a)


class _Compiled:
    """The compiled chunk-of-steps and evaluation functions for one algorithm and dataset."""

    def __init__(self, algorithm, data: ArrayDataset, spec: AugmentSpec, num_classes: int,
                 threshold: float | None = None, parallel=None):
        mean, std = jnp.asarray(data.mean, jnp.float32), jnp.asarray(data.std, jnp.float32)
        self.algorithm = algorithm
        # with several devices the batch is split over the mesh's data axis (see pcjax.sharding)
        shard = parallel.shard_batch if parallel is not None else (lambda a: a)

        def prep_train(key, xb):
            xb = augment(key, xb, spec)
            return normalize(xb, mean, std)

        def prep_eval(xb):
            if spec.crop_size is not None:
                xb = center_crop(xb, spec.crop_size)
            return normalize(xb, mean, std)

        def guarded_step(st, train_x, train_y, key, b_idx, keep):
            """One training step on batch ``b_idx``; the state only changes where ``keep`` holds and
            the energy and loss stayed finite. Returns (state, metrics, finite)."""
            x = shard(prep_train(key, shard(train_x[b_idx])))
            y = shard(jax.nn.one_hot(train_y[b_idx], num_classes))
            new, metrics = algorithm.train_step(st, x, y)
            finite = jnp.isfinite(metrics["energy"]) & jnp.isfinite(metrics["loss"])
            if threshold is not None:  # finite blow-ups count as divergence too
                finite &= (jnp.abs(metrics["energy"]) <= threshold) & (jnp.abs(metrics["loss"]) <= threshold)
            if "layer_energy" in metrics:
                finite &= jnp.all(jnp.isfinite(metrics["layer_energy"]))
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite & keep, a, b), new, st)
            return new, metrics, finite

        def step(state, train_x, train_y, key, b_idx, dead):
            new, metrics, finite = guarded_step(state, train_x, train_y, key, b_idx, ~dead)
            return new, dead | ~finite, dict(metrics, valid=~dead, finite=finite | dead)

        def chunk(state, train_x, train_y, key, idx, valid, dead):
            def body(carry, inputs):
                st, dead = carry
                b_idx, ok, k = inputs

                def run(st):
                    return guarded_step(st, train_x, train_y, k, b_idx, jnp.asarray(True))

                def skip(st):
                    shapes = jax.eval_shape(run, st)[1]
                    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
                    return st, zeros, jnp.asarray(True)

                active = ok & ~dead
                st, metrics, finite = jax.lax.cond(active, run, skip, st)
                metrics = dict(metrics, valid=active, finite=finite)
                return (st, dead | (active & ~finite)), metrics

            keys = jax.random.split(key, idx.shape[0])
            (state, dead), metrics = jax.lax.scan(body, (state, dead), (idx, valid, keys))
            return state, dead, metrics

        def evaluate(state, xs, ys, idx, mask):
            def body(total, inputs):
                b_idx, m = inputs
                out = algorithm.eval_step(state, shard(prep_eval(shard(xs[b_idx]))))
                correct = (jnp.argmax(out, -1) == ys[b_idx]) & m
                return total + correct.sum(), None

            total, _ = jax.lax.scan(body, jnp.zeros((), jnp.int32), (idx, mask))
            return total / mask.sum()

        runtime = getattr(algorithm, "runtime", None)
        jit_options = {} if getattr(runtime, "xla_fusion", True) else {
            "compiler_options": {"xla_disable_hlo_passes": "fusion"}}  # see Runtime.xla_fusion
        self.raw = types.SimpleNamespace(chunk=chunk, step=step, evaluate=evaluate)  # unjitted (pcjax.replicas vmaps them)
        self.jit_options = jit_options
        self.chunk = eqx.filter_jit(chunk, **jit_options)
        self.step = eqx.filter_jit(step, **jit_options)
        self.evaluate = eqx.filter_jit(evaluate)
        self.prep_eval = prep_eval


def _first_nonfinite(metrics: dict, bad: int) -> tuple[str, int | None]:
    """Where the first non-finite value of step ``bad`` is, and its inference step (None without a trace)."""
    trace = metrics.get("layer_energy")
    if trace is None:
        return "the loss", None
    t_bad = np.asarray(trace[bad])
    idx = np.argwhere(~np.isfinite(t_bad))
    if idx.size == 0:
        return "the energy", None
    t, layer = idx[0]
    return f"inference step {int(t)} at layer {int(layer) + 1}", int(t)


def _epoch_plan(base_key, epoch, *, n: int, batch_size: int, n_chunks: int, K: int):
    """Everything random about one epoch, in one compiled call: the batches ``perm`` (n_chunks, K, B) of
    a permutation drawn from fold_in(key, epoch) (padded with invalid rows to whole chunks; ``valid``
    (n_chunks, K)), each chunk's key fold_in(akey, c) and its K step keys split(chunk key, K)."""
    pkey, akey = jax.random.split(jax.random.fold_in(base_key, epoch))
    perm, valid = _pad_rows(epoch_permutation(pkey, n, batch_size), n_chunks * K)
    chunk_keys = jax.vmap(lambda c: jax.random.fold_in(akey, c))(jnp.arange(n_chunks))
    step_keys = jax.vmap(lambda k: jax.random.split(k, K))(chunk_keys)
    return perm.reshape(n_chunks, K, -1), valid.reshape(n_chunks, K), chunk_keys, step_keys


def _pad_rows(perm: jnp.ndarray, rows: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    n = perm.shape[0]
    valid = jnp.arange(rows) < n
    if rows > n:
        perm = jnp.concatenate([perm, jnp.zeros((rows - n, perm.shape[1]), perm.dtype)])
    return perm, valid


def fit(algorithm, model, data: ArrayDataset, cfg: TrainerConfig, *, tracker=None, meta: dict | None = None) -> tuple[Any, dict]:
    """Train ``model`` with ``algorithm`` on ``data``; evaluate every epoch; return (state, record).

    The run record (``record.json`` in ``cfg.run_dir``) holds the config, per-epoch metrics,
    seconds per epoch, compile time and hardware; with ``cfg.checkpoint`` the full training state
    is checkpointed atomically after every epoch and ``cfg.resume`` continues from the latest one.
    The pieces, in order: :class:`EpochLayout` (batches and chunks), :func:`place_data` (the
    device-resident splits), :func:`new_record`, :class:`RunStore` (record and checkpoints, resume),
    :func:`warm_up` (every compilation), then per epoch :func:`run_epoch`, :func:`epoch_entry`
    (evaluation and the record's entry) and ``RunStore.save``.
    """
    from .distributed import is_writer
    from .sharding import data_parallel
    from .streaming import choose_placement, dataset_bytes

    t_start = time.perf_counter()
    meta = dict(meta or {})
    train, (val_x, val_y) = split_validation(data, cfg.val_fraction, cfg.seed)
    layout = EpochLayout.of(train.train_x.shape[0], cfg.batch_size, cfg.chunks_per_epoch)
    parallel = data_parallel(cfg.devices, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size)
    compiled = _Compiled(algorithm, data, cfg.augment, data.num_classes, cfg.divergence_threshold, parallel)
    diagnose = _diagnostics(algorithm, compiled, train, data.num_classes, cfg) if cfg.diagnostics else None
    placement = choose_placement(cfg.placement, dataset_bytes(train.train_x, train.train_y, data.test_x, data.test_y,
                                                              val_x, val_y), cfg.device_memory_budget)
    loop = "step" if placement == "host" else resolve_loop(cfg.loop, model)  # host batches: one dispatch per step
    dev = place_data(train, data, (val_x, val_y), cfg.eval_batch_size, parallel, on_device=placement == "device")
    store = RunStore(cfg, meta, writer=is_writer())
    state = algorithm.init(model)
    if parallel is not None:
        state = parallel.replicate(state)
    record = new_record(meta, cfg, parallel)
    record["hardware"]["placement"] = placement
    state, record, start_epoch, partial = store.resume(state, record, parallel)
    base_key = data_key(cfg.seed)
    plan, compile_seconds = warm_up(compiled, loop, state, dev, layout, base_key, start_epoch)
    summary = record["summary"]  # a resumed run keeps its first start-up's numbers
    if summary.get("compile_seconds") is None:
        summary["compile_seconds"] = compile_seconds
        summary.update(cache_counts())
    if summary.get("time_to_first_step_seconds") is None:  # data placement + compilation
        summary["time_to_first_step_seconds"] = time.perf_counter() - t_start
    log.info("%d training examples in %d batches of %d per epoch (%d validation, %d test); data on %s, loop %s; "
             "compiled in %.2f s%s", train.train_x.shape[0], layout.nb, cfg.batch_size, val_x.shape[0],
             data.test_x.shape[0], placement, loop, compile_seconds,
             f"; continuing at epoch {start_epoch + 1}" if start_epoch or partial is not None else "")

    bar = _progress_bar(cfg, layout, loop, start_epoch, partial, str(meta.get("name") or "train"))
    minutes = cfg.checkpoint_minutes if store.manager is not None else None
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        resumed = partial if epoch == start_epoch else None
        before = 0.0 if resumed is None else resumed.seconds  # seconds of the chunks run before a resume
        if cfg.beta_schedule is not None and hasattr(state, "beta"):
            state = eqx.tree_at(lambda s: s.beta, state, jnp.asarray(cfg.beta_schedule(epoch), jnp.float32))
        saver = None if minutes is None else _PartialSaver(store, record, epoch, minutes, t_epoch, before,
                                                           layout.n_chunks)
        state, dead, metrics = run_epoch(compiled, loop, state, dev, plan(base_key, epoch), epoch, bar,
                                         sharding=None if parallel is None else parallel.batch, resumed=resumed,
                                         after_chunk=saver)
        seconds = before + time.perf_counter() - t_epoch
        if dead:
            _stop_diverged(algorithm, cfg, store, record, metrics, epoch, bar)
        entry, trace = epoch_entry(compiled, state, dev, metrics, epoch, seconds, diagnose)
        record["epochs"].append(entry)
        record["inference_trace"] = None if trace is None else trace.tolist()
        _summarise(record)
        store.save(state, record, epoch + 1)
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, _epoch_text(entry))
        _warn_collapse(record, epoch)
        if tracker is not None:
            _track_epoch(tracker, entry, trace, epoch)
    if bar is not None:
        bar.close()
    record["status"] = "complete"
    _summarise(record)
    store.write_record(record)
    return state, record


def _progress_bar(cfg: TrainerConfig, layout: EpochLayout, loop: str, start_epoch: int, partial, name: str):
    """The run's tqdm bar over the chunks (``scan``) or steps (``step``) still to run; None without progress."""
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    per_epoch, unit = (layout.n_chunks, "chunk") if loop == "scan" else (layout.nb, "step")
    done = 0 if partial is None else (partial.chunk if loop == "scan" else int(partial.metrics["valid"].sum()))
    return tqdm(total=(cfg.epochs - start_epoch) * per_epoch - done, desc=name, unit=unit, leave=False)


def _stop_diverged(algorithm, cfg: TrainerConfig, store: RunStore, record: dict, metrics, epoch: int, bar) -> None:
    """A diverged epoch: the record says where (status ``diverged``), the checkpoints stay as they were,
    and a ``DivergenceError`` names the batch, step and layer."""
    from .algorithms.bp import Backprop

    divergence, message = describe_divergence(metrics, epoch, cfg.divergence_threshold,
                                              backprop=isinstance(algorithm, Backprop),
                                              first_epoch=epoch == 0 and not record.get("resumes"))
    record["status"], record["divergence"] = "diverged", divergence
    store.write_record(record)
    if bar is not None:
        bar.close()
    raise DivergenceError(message)


def _track_epoch(tracker, entry: dict, trace, epoch: int) -> None:
    """The epoch's entry to the tracker, with the per-layer energy at every inference step (a table and
    plot in wandb)."""
    logged = {k: v for k, v in entry.items() if k != "epoch"}
    if trace is not None:
        logged["inference_trace"] = trace.tolist()
    tracker.log(logged, step=epoch + 1)


@dataclass(frozen=True)
class EpochLayout:
    """How an epoch is cut: ``nb`` full batches of the ``n`` training examples, run as ``n_chunks``
    compiled chunks of ``K`` steps (the last chunk padded with skipped steps)."""

    n: int
    batch_size: int
    nb: int
    K: int
    n_chunks: int

    @classmethod
    def of(cls, n: int, batch_size: int, chunks_per_epoch: int) -> "EpochLayout":
        """The layout for ``n`` examples; ConfigError when one batch is larger than the training set."""
        if n < batch_size:
            raise ConfigError(f"trainer.batch_size={batch_size} exceeds the {n} training examples")
        nb = n // batch_size
        K = math.ceil(nb / min(chunks_per_epoch, nb))
        return cls(n, batch_size, nb, K, math.ceil(nb / K))


def place_data(train: ArrayDataset, data: ArrayDataset, val: tuple, eval_batch_size: int, parallel=None, *,
               on_device: bool = True) -> dict:
    """The uint8 splits on the device(s) (replicated over the mesh with several devices; left on the host
    with ``on_device=False``, see :mod:`pcjax.streaming`), and the evaluation index batches and masks of
    the test and validation splits."""
    val_x, val_y = val
    dev = dict(train_x=train.train_x, train_y=train.train_y, test_x=data.test_x, test_y=data.test_y,
               val_x=val_x, val_y=val_y)
    dev["eval_batch_size"], dev["on_device"] = eval_batch_size, on_device
    if on_device:
        dev.update({k: jnp.asarray(dev[k]) for k in ("train_x", "train_y", "test_x", "test_y", "val_x", "val_y")})
        if parallel is not None:
            dev = parallel.replicate(dev)
    dev["test_idx"], dev["test_mask"] = eval_batches(data.test_x.shape[0], eval_batch_size)
    dev["val_idx"], dev["val_mask"] = eval_batches(max(val_x.shape[0], 1), eval_batch_size)
    return dev


def _diagnostics(algorithm, compiled, train: ArrayDataset, num_classes: int, cfg: TrainerConfig):
    """Per-layer update norms and cosines with backprop, on a fixed training batch: state -> dict."""
    from .diagnostics import Diagnostics

    loss = getattr(getattr(algorithm, "config", None), "energy", None)
    loss = loss.output if loss is not None else getattr(algorithm, "loss", "gaussian")
    diagnose = Diagnostics(algorithm, loss if isinstance(loss, str) else "gaussian")
    b = min(cfg.batch_size, train.train_x.shape[0])
    batch = (compiled.prep_eval(jnp.asarray(train.train_x[:b])), jax.nn.one_hot(jnp.asarray(train.train_y[:b]),
                                                                                 num_classes))
    return lambda state: diagnose(state, *batch)


def new_record(meta: dict, cfg: TrainerConfig, parallel) -> dict:
    """A fresh run record (status ``running``) with the run's identity, config and hardware."""
    from .tracking import git_commit, hardware_info

    record: dict[str, Any] = {
        "schema": 1, **{k: meta.get(k) for k in ("name", "dataset", "model", "algorithm")},
        "seed": cfg.seed, "config": meta.get("config", {}), "reference": meta.get("reference"),
        "hardware": {**hardware_info(), "devices": 1 if parallel is None else parallel.n,
                     "processes": jax.process_count(), "compile_cache": jax.config.jax_compilation_cache_dir},
        "git_commit": git_commit(), "status": "running",
        "epochs": [], "inference_trace": None, "summary": {},
    }
    if (meta.get("checkpoint_meta") or {}).get("config_fingerprint"):
        record["config_fingerprint"] = meta["checkpoint_meta"]["config_fingerprint"]
    return record


class RunStore:
    """The run directory: ``record.json`` (atomic writes) and the per-epoch checkpoints. Only the
    writer (process 0 of a multi-process run) writes; every process can resume from it."""

    def __init__(self, cfg: TrainerConfig, meta: dict, *, writer: bool = True):
        from .checkpoint import CheckpointManager

        self.cfg, self.meta, self.writer = cfg, meta, writer
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else None
        self.manager = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.manager = CheckpointManager(self.run_dir, keep=cfg.keep_checkpoints) if cfg.checkpoint else None

    def resume(self, state, record: dict, parallel=None):
        """(state, record, first epoch to run, partial): from the latest checkpoint when ``cfg.resume``;
        ``partial`` is None or ``PartialEpoch`` (the epoch in progress, from its within-epoch checkpoint)."""
        if not (self.cfg.resume and self.manager is not None):
            return state, record, 0, None
        statics = eqx.filter(state, eqx.is_array, inverse=True)
        restored = self.manager.restore_latest(eqx.filter(state, eqx.is_array))
        ck_meta, epoch = None, 0
        if restored is not None:
            arrays, ck_meta = restored
            state, epoch = eqx.combine(arrays, statics), int(ck_meta["epoch"])
        partial = self.manager.load_partial(eqx.filter(state, eqx.is_array), epoch)
        if partial is not None:
            arrays, metrics, p_meta = partial
            state = eqx.combine(arrays, statics)
            partial = PartialEpoch(int(p_meta["chunk"]), metrics, float(p_meta["seconds"]))
            ck_meta = ck_meta or {"epoch": 0, "epochs": [], "compile_seconds": p_meta.get("compile_seconds")}
        if ck_meta is None:
            return state, record, 0, None
        if parallel is not None:
            state = parallel.replicate(state)
        record = _resumed_record(record, self.run_dir, ck_meta, self.cfg)
        if partial is not None:
            record["resumes"][-1]["chunk"] = partial.chunk
        return state, record, epoch, partial

    def save_partial(self, state, record: dict, epoch: int, chunk: int, metrics: dict, seconds: float,
                     chunks_total: int | None = None) -> None:
        """The within-epoch checkpoint: the state after chunk ``chunk - 1`` of ``epoch`` (0-based), the
        per-step metrics so far, the epoch's seconds so far and its number of chunks (writer only)."""
        if self.manager is not None and self.writer:
            self.manager.save_partial(eqx.filter(state, eqx.is_array), metrics,
                                      {**(self.meta.get("checkpoint_meta") or {}), "epoch": epoch, "chunk": chunk,
                                       "chunks_total": chunks_total, "seconds": seconds,
                                       "compile_seconds": record["summary"]["compile_seconds"]})

    def write_record(self, record: dict) -> None:
        """Write ``record.json`` atomically (writer only)."""
        if self.run_dir is not None and self.writer:
            _write_json_atomic(self.run_dir / "record.json", record)

    def save(self, state, record: dict, epoch: int) -> None:
        """Checkpoint the state after ``epoch`` (when checkpointing), then write the record."""
        if self.manager is not None and self.writer:
            self.manager.save(eqx.filter(state, eqx.is_array),
                              {**(self.meta.get("checkpoint_meta") or {}), "epoch": epoch, "epochs": record["epochs"],
                               "compile_seconds": record["summary"]["compile_seconds"]}, epoch)
        self.write_record(record)


@dataclass(frozen=True)
class PartialEpoch:
    """An epoch resumed part-way: the first chunk still to run, the per-step metrics of the chunks run
    before it, and the seconds they took."""

    chunk: int
    metrics: dict
    seconds: float


def warm_up(compiled, loop: str, state, dev: dict, layout: EpochLayout, base_key, start_epoch: int):
    """Compile everything an epoch runs before the first one, so epoch times exclude compilation:
    the training chunk on an all-invalid chunk (the cond skips every step) or one discarded step,
    the evaluation on the test and validation splits, and the epoch plan. Returns (plan, seconds)."""
    t0 = time.perf_counter()
    dummy_idx = jnp.zeros((layout.K, layout.batch_size), jnp.int32)
    if not dev["on_device"]:  # host batches: the step on one batch, the evaluation on one eval batch
        B, E = layout.batch_size, dev["eval_batch_size"]
        xb, yb = np.zeros((B,) + dev["train_x"].shape[1:], np.uint8), np.zeros((B,), np.int32)
        jax.block_until_ready(compiled.step(state, xb, yb, base_key, np.arange(B, dtype=np.int32), jnp.asarray(True)))
        xe, ye = np.zeros((E,) + dev["test_x"].shape[1:], np.uint8), np.zeros((E,), np.int32)
        compiled.evaluate(state, xe, ye, np.arange(E, dtype=np.int32)[None], np.ones((1, E), bool)).block_until_ready()
    elif loop == "scan":
        jax.block_until_ready(compiled.chunk(state, dev["train_x"], dev["train_y"], base_key, dummy_idx,
                                             jnp.zeros((layout.K,), bool), jnp.asarray(False)))
    else:  # one discarded step (its result is dropped; the dead flag keeps nothing from it anyway)
        jax.block_until_ready(compiled.step(state, dev["train_x"], dev["train_y"], base_key, dummy_idx[0],
                                            jnp.asarray(True)))
    if dev["on_device"]:
        compiled.evaluate(state, dev["test_x"], dev["test_y"], dev["test_idx"], dev["test_mask"]).block_until_ready()
        if dev["val_x"].shape[0]:
            compiled.evaluate(state, dev["val_x"], dev["val_y"], dev["val_idx"], dev["val_mask"]).block_until_ready()
    # the epoch's permutation and keys: one compiled function whose results are used on the host, so
    # that no small operation compiles inside the timed first epoch
    jitted = jax.jit(functools.partial(_epoch_plan, n=layout.n, batch_size=layout.batch_size,
                                       n_chunks=layout.n_chunks, K=layout.K))

    def plan(key, epoch):
        return tuple(np.asarray(a) for a in jitted(key, epoch))

    plan(base_key, start_epoch)
    return plan, time.perf_counter() - t0


def run_epoch(compiled, loop: str, state, dev: dict, plan: tuple, epoch: int, bar=None, sharding=None, *,
              resumed: PartialEpoch | None = None, after_chunk: Callable | None = None):
    """One epoch's training steps from its ``plan`` (batches, validity, chunk and step keys): chunks of
    steps under ``lax.scan``, or one dispatch per step (the same batches and keys), the batches gathered
    on the host when the dataset is not on the device. Returns (state, dead, per-step metrics as host
    arrays); ``dead`` when a step diverged (the rest were skipped).

    ``resumed`` (a within-epoch checkpoint) starts at its chunk with its metrics, so the epoch's result
    is the one an uninterrupted epoch gives; ``after_chunk(state, next_chunk, metrics_so_far, dead)`` is
    called after every chunk but the last (the within-epoch checkpoints)."""
    perm, valid, chunk_keys, step_keys = plan
    first = 0 if resumed is None else resumed.chunk
    dead = jnp.asarray(False)
    host = None  # host-resident data: the epoch's batches in plan order, each one the "dataset" of its step
    if not dev["on_device"]:
        from .streaming import HostBatches

        host, rows = iter(HostBatches(dev["train_x"], dev["train_y"], perm[first:], valid[first:], sharding)), \
            np.arange(perm.shape[-1], dtype=np.int32)
    chunks = [] if resumed is None else [resumed.metrics]
    for c in range(first, perm.shape[0]):
        if loop == "scan":
            state, dead, m = compiled.chunk(state, dev["train_x"], dev["train_y"], chunk_keys[c], perm[c], valid[c],
                                            dead)
        else:
            steps = []
            for k in np.flatnonzero(valid[c]):
                (xs, ys), idx = ((dev["train_x"], dev["train_y"]), perm[c, k]) if host is None else (next(host), rows)
                state, dead, mk = compiled.step(state, xs, ys, step_keys[c, k], idx, dead)
                steps.append(mk)
                if bar is not None:
                    bar.update(1)
            m = {key: np.stack([np.asarray(s[key]) for s in steps]) for key in steps[0]}
        chunks.append(m)
        if bar is not None:
            bar.update(1 if loop == "scan" else 0)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(np.asarray(m['loss'])[-1]):.4f}")
        if loop == "step" and bool(dead):  # the scan skips the remaining steps; here they are not run
            break
        if after_chunk is not None and c + 1 < perm.shape[0]:
            after_chunk(state, c + 1, chunks, dead)
    metrics = _concat(chunks)
    jax.block_until_ready(state)
    return state, bool(dead), metrics


def _concat(chunks: list[dict]) -> dict:
    """The per-step metrics of several chunks as one dict of host arrays (steps first)."""
    return {k: np.concatenate([np.asarray(m[k]) for m in chunks]) for k in chunks[0]}


class _PartialSaver:
    """``after_chunk`` for :func:`run_epoch`: a within-epoch checkpoint whenever ``minutes`` have passed
    since the epoch started or since the last one (0: after every chunk), unless a step has diverged.
    Between saves it does not wait for the device, so chunks stay asynchronously dispatched."""

    def __init__(self, store: RunStore, record: dict, epoch: int, minutes: float, t_epoch: float, before: float,
                 chunks_total: int | None = None):
        self.store, self.record, self.epoch, self.minutes = store, record, epoch, minutes
        self.t_epoch, self.before, self.last, self.chunks_total = t_epoch, before, t_epoch, chunks_total

    def __call__(self, state, chunk: int, chunks: list[dict], dead) -> None:
        if time.perf_counter() - self.last < 60.0 * self.minutes or bool(dead):
            return
        jax.block_until_ready(state)
        self.store.save_partial(state, self.record, self.epoch, chunk, _concat(chunks),
                                self.before + time.perf_counter() - self.t_epoch, self.chunks_total)
        self.last = time.perf_counter()


def _warn_collapse(record: dict, epoch: int, seed: int | None = None) -> None:
    """Log a warning when epoch ``epoch`` (0-based) is the one :func:`_summarise` found collapsed."""
    c = record["summary"].get("collapse")
    if c is not None and c["epoch"] == epoch + 1:
        pick = ("the strict protocol reads the best validation epoch" if c["metric"] == "val_acc" else
                "with no validation split the strict protocol reads the last epoch")
        log.warning("%straining collapsed at %s, every value finite; the run trains on (%s), see summary.collapse "
                    "in its record", "" if seed is None else f"seed {seed}: ", describe_collapse(c), pick)


def _epoch_text(entry: dict) -> str:
    """The scalar metrics of an epoch's record entry, one line (``train_loss=0.0412 ... seconds=0.21``)."""
    parts = []
    for key, value in entry.items():
        if key == "epoch" or isinstance(value, (list, dict)) or value is None:
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def describe_divergence(metrics: dict, epoch: int, threshold: float | None, *, backprop: bool = False,
                        first_epoch: bool | None = None) -> tuple[dict, str]:
    """Where the first bad step of an epoch went wrong (``{"epoch", "batch", "where"}``) and the
    DivergenceError message naming it and the fix. ``backprop``: the algorithm is backprop (a loss,
    no inference, one learning rate). ``first_epoch``: ``epoch`` is the run's first (default: epoch
    0), so its batch 0 ran on the initial weights. A non-finite value that no rate can have caused (the
    run's first step, or inference step 0, where the latents are still the feed-forward pass's) is
    blamed on the data or the energy, not on the learning rates."""
    mask, finite = metrics["valid"], metrics["finite"]
    bad = int(np.argmax(mask & ~finite))
    first_step = bad == 0 and (epoch == 0 if first_epoch is None else first_epoch)
    values = {k: float(metrics[k][bad]) for k in ("energy", "loss")}
    kept = ("Training stopped; the last good checkpoint and record (end of the previous epoch) are kept."
            if epoch > 0 else "Training stopped in the first epoch; the record is marked diverged.")
    data = ("the data (NaN or infinite inputs; a normalisation whose standard deviation is 0 divides by 0: "
            "check the dataset's mean and std)")
    step_t = None
    if all(math.isfinite(v) for v in values.values()):  # finite, but beyond the threshold
        key, value = max(values.items(), key=lambda kv: abs(kv[1]))
        key = "loss" if backprop else key  # backprop's energy is its loss
        where = f"the {key} reached {value:.3g}"
        what = (f"the {key} reached {value:.3g}, beyond trainer.divergence_threshold={threshold:g}, "
                f"in epoch {epoch + 1}, batch {bad}")
        hint = " (raise trainer.divergence_threshold if such values are expected)"
    else:
        where, step_t = _first_nonfinite(metrics, bad)
        noun = "loss" if backprop else "energy"
        what = f"the {noun} became non-finite in epoch {epoch + 1}, batch {bad}" + (
            "" if where == f"the {noun}" else f", {where}")
        hint = ""
    if backprop:
        if first_step and not hint:
            fix = (f"This is the run's first step, before any weight update: the initial network's loss is "
                   f"already non-finite, so no learning rate is the cause. Check {data} and the loss "
                   "(algorithm.loss, or energy.output when unset).")
        else:
            fix = ("Backprop has no inference (algorithm.latent.lr and algorithm.T do not apply): try a smaller "
                   "weight learning rate (optim.lr) or clip the gradient (optim.grad_clip=1.0), and check the loss "
                   f"(algorithm.loss, or energy.output when unset){hint}.")
        return {"epoch": epoch + 1, "batch": bad, "where": where}, f"{what}. {kept} {fix}"
    if step_t == 0 and first_step:
        fix = ("At inference step 0 of the run's first batch no learning rate has acted yet: the latents are the "
               "feed-forward values of the initial weights. So the cause is the input or the energy, not a rate: "
               f"check {data}, the energy terms and their parameters (energy.hidden, energy.output, "
               "energy.backward, energy.params: a custom term must be finite where prediction and value agree) and "
               "algorithm.beta.")
    elif step_t == 0:
        fix = ("At inference step 0 the latents are still this batch's feed-forward values, so the inference rate "
               "is not the cause: the weights after the previous update are (try a smaller weight lr, optim.lr, or "
               f"clip the gradient, optim.grad_clip=1.0), or this batch's data: check {data}.")
    else:
        fix = ("Try a smaller inference rate (algorithm.latent.lr) or fewer inference steps, or a smaller "
               f"weight lr{hint}.")
    return {"epoch": epoch + 1, "batch": bad, "where": where}, f"{what}. {kept} {fix}"


def _accuracy(compiled, state, dev: dict, split: str) -> float:
    """Test or validation accuracy: one compiled scan over the device-resident split, or per host batch."""
    if dev["on_device"]:
        return float(compiled.evaluate(state, dev[f"{split}_x"], dev[f"{split}_y"], dev[f"{split}_idx"],
                                       dev[f"{split}_mask"]))
    from .streaming import host_accuracy

    return host_accuracy(compiled.evaluate, state, dev[f"{split}_x"], dev[f"{split}_y"], dev["eval_batch_size"])


def epoch_entry(compiled, state, dev: dict, metrics: dict, epoch: int, seconds: float, diagnose=None):
    """The record's entry for one epoch (means of every per-step scalar metric, a custom algorithm's
    own included; test and validation accuracy; per-layer energies) and the epoch's mean inference
    trace (inference steps x layers, None without one)."""
    t_eval = time.perf_counter()
    test_acc = _accuracy(compiled, state, dev, "test")
    val_acc = _accuracy(compiled, state, dev, "val") if dev["val_x"].shape[0] else None
    accuracies = (test_acc, val_acc, time.perf_counter() - t_eval)
    return entry_of(metrics, epoch, seconds, accuracies, None if diagnose is None else diagnose(state))


def entry_of(metrics: dict, epoch: int, seconds: float, accuracies: tuple, diagnostics: dict | None = None):
    """The record's entry for one epoch from its per-step ``metrics`` (host arrays, steps first) and
    ``accuracies`` ``(test, validation or None, evaluation seconds)``; returns (entry, mean inference
    trace or None), as :func:`epoch_entry`."""
    mask = metrics["valid"]
    means = {k: float(v[mask].mean()) for k, v in metrics.items() if k not in ("valid", "finite") and v.ndim == 1}
    trace = metrics["layer_energy"][mask].mean(axis=0) if "layer_energy" in metrics else None
    test_acc, val_acc, eval_seconds = accuracies
    entry = {"epoch": epoch + 1, "train_loss": means["loss"], "train_energy": means["energy"],
             "train_acc": means["acc"], "val_acc": val_acc, "test_acc": test_acc, "seconds": seconds,
             "eval_seconds": eval_seconds}
    entry.update({f"train_{k}": v for k, v in means.items() if k not in ("loss", "energy", "acc")})
    if diagnostics is not None:
        entry["diagnostics"] = diagnostics
    if trace is not None:
        entry["layer_energy"] = trace[-1].tolist()
        for key in ("step_scale", "error_norm"):
            if key in metrics:
                entry[key] = metrics[key][mask].mean(axis=0).tolist()
    return entry, trace


def _resumed_record(fresh: dict, run_dir: Path | None, ck_meta: dict, cfg: TrainerConfig) -> dict:
    """The record a resumed run continues: the run directory's ``record.json`` when it is intact
    (summary, inference trace, config and everything else kept), else ``fresh``; the epochs always
    come from the checkpoint, and a ``resumes`` entry notes where this process took over."""
    from .runs import read_record

    old = read_record(run_dir) if run_dir is not None else None
    record = dict(old) if old is not None and old.get("schema") == fresh["schema"] else dict(fresh)
    record["summary"] = dict(record.get("summary") or {})
    previous = {k: record.pop(k) for k in ("divergence", "error", "interrupted") if k in record}
    record.setdefault("resumes", [])
    record["resumes"] = [*record["resumes"], {
        "epoch": int(ck_meta["epoch"]), "previous_status": record.get("status"), **previous,
        "git_commit": fresh.get("git_commit"), "device_kind": (fresh.get("hardware") or {}).get("device_kind"),
        "devices": (fresh.get("hardware") or {}).get("devices", 1)}]
    record["status"] = "running"
    record["epochs"] = ck_meta["epochs"]
    if ck_meta.get("compile_seconds") is not None:
        record["summary"]["compile_seconds"] = ck_meta.get("compile_seconds")
    config = record.get("config") or {}
    trainer = config.get("trainer") if isinstance(config, dict) else None
    if isinstance(trainer, dict) and trainer.get("epochs") not in (None, cfg.epochs):  # an extended run
        record["config"] = {**config, "trainer": {**trainer, "epochs": cfg.epochs, "extend_epochs": True}}
    return record


def _summarise(record: dict) -> None:
    """summary: strict protocol (test acc at the best-validation epoch), best test, seconds/epoch
    (:func:`_seconds_per_epoch`), and ``collapse`` where a finite blow-up dropped the held-out
    accuracy (:func:`pcjax.collapse.find_collapse`)."""
    epochs = record["epochs"]
    if not epochs:
        return
    collapse = find_collapse(epochs)
    if collapse is None:
        record["summary"].pop("collapse", None)
    else:
        record["summary"]["collapse"] = collapse
    if all(e["val_acc"] is not None for e in epochs):
        best = max(range(len(epochs)), key=lambda i: (epochs[i]["val_acc"], -i))
    else:
        best = len(epochs) - 1
    record["summary"].update(
        test_acc=epochs[best]["test_acc"], val_acc=epochs[best]["val_acc"], best_epoch=best + 1,
        best_test_acc=max(e["test_acc"] for e in epochs), last_test_acc=epochs[-1]["test_acc"],
        seconds_per_epoch=_seconds_per_epoch(record),
    )


def _seconds_per_epoch(record: dict) -> float:
    """Mean seconds of the epochs that are not the first a process ran: the first epoch of a fresh
    run, and the first after every resume (a new process's first epoch also waits for its data
    placement and first dispatches), are left out; with no other epoch, the run's first epoch."""
    secs = [e["seconds"] for e in record["epochs"]]
    firsts = {0} | {int(r["epoch"]) for r in record.get("resumes") or [] if "epoch" in r}
    steady = [s for i, s in enumerate(secs) if i not in firsts]
    return float(np.mean(steady) if steady else secs[0])
