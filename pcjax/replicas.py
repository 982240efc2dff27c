"""``trainer.replicas=K``: K independent runs (seeds ``seed .. seed+K-1``) trained as one vmapped program.

Every array of the training state gains a leading replica axis; the compiled chunk of steps, the
single step and the evaluation of :class:`pcjax.training._Compiled` are ``vmap``-ped over it, so one
compiled program advances all K runs at once. Replica ``k`` is exactly the run with seed
``seed + k``: its model is initialised from ``PRNGKey(seed + k)``, its validation split, epoch
permutations and augmentation keys come from its own seed (:func:`pcjax.training.data_key`), and the
K runs share only the device-resident dataset (the uint8 training set is placed once; each replica
gathers its own training and validation rows from it by index).

Files: the group's directory (``run_dir``) holds the lock, ``train.log``, Hydra's files and the
group's checkpoints (one stacked state per epoch, and the within-epoch one); replica ``k`` writes a
normal run directory ``run_dir/seed<seed+k>/`` (``record.json``, ``metrics.jsonl``), so
``pcjax table run_dir`` lists each replica as its own seed. A replica's record is that of the
separate run with its seed (its config has ``seed=seed+k`` and ``trainer.replicas=1``, so it pools
with separately trained seeds), flagged by a ``replica`` field naming the group; its seconds per
epoch are the group's wall time. Resuming the group (``trainer.resume=run_dir``) restores the stacked
state and every replica's record.

A replica that diverges stops (its record is marked ``diverged``, as a separate run's is) while the
others go on; once they have finished, a :class:`~pcjax.errors.DivergenceError` names the replicas
that diverged. Multi-device and multi-process runs, host-resident (streamed) data and
``trainer.diagnostics`` are refused (:func:`check_replicas`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .data import ArrayDataset
from .data.pipeline import eval_batches
from .errors import ConfigError, DivergenceError
from .training import (EpochLayout, PartialEpoch, TrainerConfig, _Compiled, _concat, _epoch_text, _PartialSaver,
                       _resumed_record, _summarise, _warn_collapse, data_key, describe_divergence, entry_of, new_record,
                       resolve_loop)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- configuration
def check_replicas(c: dict) -> int:
    """The number of replicas of the plain config ``c``; a ``ConfigError`` naming the reason and the
    fix for a combination that replicas do not support (several devices or processes, host-resident
    data, per-layer diagnostics)."""
    t = c["trainer"]
    k = int(t.get("replicas", 1) or 1)
    if k == 1:
        return k
    fix = "set trainer.replicas=1 and train the seeds as separate runs (e.g. seed=0,1,2 with -m)"
    if str(t.get("distributed", "off")) != "off":
        raise ConfigError(f"trainer.replicas={k} trains its replicas in one process, so it cannot be combined with "
                          f"trainer.distributed={t['distributed']}: set trainer.distributed=off, or {fix}")
    if str(t.get("devices", 1)) != "1":
        raise ConfigError(f"trainer.replicas={k} trains its replicas on one device, so it cannot be combined with "
                          f"trainer.devices={t['devices']}: set trainer.devices=1, or {fix}")
    if t.get("placement", "auto") == "host":
        raise ConfigError(f"trainer.replicas={k} needs the dataset on the device; trainer.placement=host (streamed "
                          f"batches) is not supported with it: set trainer.placement=device or auto, or {fix}")
    if t.get("diagnostics"):
        raise ConfigError(f"trainer.replicas={k} does not compute trainer.diagnostics (per-layer comparisons with "
                          f"backprop): set trainer.diagnostics=false, or {fix}")
    return k


def replica_config(c: dict, k: int) -> dict:
    """The config of replica ``k`` of the group config ``c``: that of the separate run it equals
    (``seed + k``, ``trainer.replicas=1``)."""
    out = copy.deepcopy(c)
    out["seed"] = int(c["seed"]) + k
    out["trainer"]["replicas"] = 1
    return out


def replica_dirs(run_dir: str | Path, seed: int, replicas: int) -> list[Path]:
    """The run directories of a group's replicas: ``run_dir/seed<seed+k>``."""
    return [Path(run_dir) / f"seed{seed + k}" for k in range(replicas)]


class GroupLock:
    """The locks (:class:`pcjax.runs.RunLock`) of a group's directory and of each replica's: a second
    run in any of them is refused while the group trains."""

    def __init__(self, dirs: list[Path]) -> None:
        from .runs import RunLock

        self.locks = [RunLock(d) for d in dirs]

    def acquire(self) -> "GroupLock":
        """Take every lock, or none (``RunLockedError`` naming the directory in use)."""
        try:
            for lock in self.locks:
                lock.acquire()
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Release the locks held."""
        for lock in self.locks:
            lock.release()


class ReplicaTrackers:
    """One tracker per replica, each started with the replica's config and directory."""

    def __init__(self, trackers: list, configs: list[dict], dirs: list[Path]) -> None:
        self.trackers, self.configs, self.dirs = trackers, configs, dirs

    def start(self, config: dict | None = None, run_dir: Any = None) -> None:
        """Start every replica's tracker (the group's ``config`` and ``run_dir`` are not used)."""
        for tracker, c, d in zip(self.trackers, self.configs, self.dirs):
            tracker.start(c, d)

    def finish(self, summary: dict | None = None) -> None:
        """Finish every replica's tracker."""
        for tracker in self.trackers:
            tracker.finish(summary)


def mark_replicas(dirs: list[Path], metas: list[dict], status: str, **fields: Any) -> None:
    """Mark the record of every replica still ``running`` (or without a record) ``status``; records
    that are complete or diverged stay as they are."""
    from .runs import mark_record, read_record

    for d, meta in zip(dirs, metas):
        record = read_record(d)
        if record is None or record.get("status") == "running":
            mark_record(d, status, meta, **fields)


def group_result(records: list[dict], run_dir: Path) -> dict:
    """What ``run_experiment`` returns for a group: the first replica's record with the group's
    ``run_dir``, ``seeds``, the K records under ``replicas``, and a summary holding the mean over the
    completed replicas of every numeric summary value (the first replica's when none completed);
    ``collapse`` maps each replica's seed to its own (``pcjax.collapse``; None where it did not)."""
    done = [r for r in records if r.get("status") == "complete"] or records[:1]
    summary = {}
    for key, value in records[0]["summary"].items():
        values = [r["summary"].get(key) for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        summary[key] = float(np.mean(values)) if numeric and values else value
    summary.pop("collapse", None)
    if any(r["summary"].get("collapse") for r in records):
        summary["collapse"] = {r["seed"]: r["summary"].get("collapse") for r in records}
    return {**records[0], "summary": summary, "seeds": [r["seed"] for r in records], "replicas": records,
            "run_dir": str(run_dir)}


# ------------------------------------------------------------------------------- state and data
def stack_states(states: list) -> Any:
    """One state whose array leaves are the replicas' stacked on a leading axis (their static parts,
    e.g. activation functions, must agree)."""
    arrays = [eqx.filter(s, eqx.is_array) for s in states]
    statics = [eqx.filter(s, eqx.is_array, inverse=True) for s in states]
    if any(jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(arrays[0]) for a in arrays):
        raise ConfigError("the replicas' training states differ in structure; trainer.replicas needs one model "
                          "architecture for every seed")
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *arrays)
    return eqx.combine(stacked, statics[0])


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) row indices of ``pcjax.data.split_validation(ds, fraction, seed)`` for
    a training set of ``n`` rows: the same draw, as indices into the full set."""
    n_val = int(round(fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]).astype(np.int32), np.sort(perm[:n_val]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class GroupData:
    """The device-resident dataset shared by the replicas and each replica's split, as row indices
    into the full training set: ``train_idx`` (R, n_train), ``val_idx`` (R, eval batches, E) with its
    mask (padding rows point at a valid row and are masked, as :func:`eval_batches` pads)."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    train_idx: np.ndarray
    val_idx: np.ndarray | None
    val_mask: np.ndarray | None
    test_idx: np.ndarray
    test_mask: np.ndarray

    @classmethod
    def place(cls, data: ArrayDataset, seeds: list[int], fraction: float, eval_batch_size: int) -> "GroupData":
        """The full splits on the device once and each replica's training and validation rows."""
        splits = [split_indices(data.train_x.shape[0], fraction, s) for s in seeds]
        val_idx = val_mask = None
        if splits[0][1].size:
            idx, val_mask = eval_batches(splits[0][1].size, eval_batch_size)
            val_idx = np.stack([val[idx] for _, val in splits])
        test_idx, test_mask = eval_batches(data.test_x.shape[0], eval_batch_size)
        return cls(jnp.asarray(data.train_x), jnp.asarray(data.train_y), jnp.asarray(data.test_x),
                   jnp.asarray(data.test_y), np.stack([tr for tr, _ in splits]), val_idx, val_mask, test_idx, test_mask)


class Vmapped:
    """The compiled functions of :class:`pcjax.training._Compiled` over a leading replica axis of the
    state, the keys, the batch indices and the divergence flags (the dataset and the chunk's step
    validity are shared)."""

    def __init__(self, compiled: _Compiled) -> None:
        raw, opts, per = compiled.raw, compiled.jit_options, eqx.if_array(0)
        self.chunk = eqx.filter_jit(eqx.filter_vmap(raw.chunk, in_axes=(per, None, None, 0, 0, None, 0)), **opts)
        self.step = eqx.filter_jit(eqx.filter_vmap(raw.step, in_axes=(per, None, None, 0, 0, 0)), **opts)
        self.evaluate = eqx.filter_jit(eqx.filter_vmap(raw.evaluate, in_axes=(per, None, None, None, None)))
        self.evaluate_own = eqx.filter_jit(eqx.filter_vmap(raw.evaluate, in_axes=(per, None, None, 0, None)))

    def accuracies(self, state, dev: GroupData) -> tuple[np.ndarray, np.ndarray | None]:
        """Every replica's test accuracy and validation accuracy (None without a validation split)."""
        test = np.asarray(self.evaluate(state, dev.test_x, dev.test_y, dev.test_idx, dev.test_mask))
        if dev.val_idx is None:
            return test, None
        return test, np.asarray(self.evaluate_own(state, dev.train_x, dev.train_y, dev.val_idx, dev.val_mask))


def group_planner(layout: EpochLayout, seeds: list[int], train_idx: np.ndarray) -> Callable[[int], tuple]:
    """``plan(epoch)``: each replica's epoch plan (:func:`pcjax.training._epoch_plan` of its own data key,
    in one compiled call) with the batches mapped to rows of the full training set: ``perm``
    (R, chunks, K, B), ``valid`` (chunks, K), chunk keys (R, chunks, 2), step keys (R, chunks, K, 2)."""
    import functools

    from .training import _epoch_plan

    keys = jnp.stack([data_key(s) for s in seeds])
    one = functools.partial(_epoch_plan, n=layout.n, batch_size=layout.batch_size, n_chunks=layout.n_chunks,
                            K=layout.K)
    jitted = jax.jit(jax.vmap(one, in_axes=(0, None)))

    def plan(epoch: int) -> tuple:
        perm, valid, chunk_keys, step_keys = (np.asarray(a) for a in jitted(keys, epoch))
        rows = np.stack([idx[p] for idx, p in zip(train_idx, perm)])
        return rows, valid[0], chunk_keys, step_keys

    return plan


# ------------------------------------------------------------------------------- the epoch
def run_group_epoch(fns: Vmapped, loop: str, state, dev: GroupData, plan: tuple, stopped: np.ndarray, bar=None, *,
                    resumed: PartialEpoch | None = None, after_chunk=None) -> tuple[Any, np.ndarray, dict]:
    """One epoch of every replica (:func:`pcjax.training.run_epoch` over the replica axis); replicas in
    ``stopped`` skip every step. Returns (state, dead per replica, per-step metrics as host arrays of
    shape (steps, R, ...))."""
    perm, valid, chunk_keys, step_keys = plan
    dead = jnp.asarray(stopped)
    chunks = [] if resumed is None else [resumed.metrics]
    for c in range(0 if resumed is None else resumed.chunk, perm.shape[1]):
        if loop == "scan":
            state, dead, m = fns.chunk(state, dev.train_x, dev.train_y, chunk_keys[:, c], perm[:, c], valid[c], dead)
            m = {key: np.swapaxes(np.asarray(v), 0, 1) for key, v in m.items()}  # (steps, R, ...)
        else:
            steps = []
            for k in np.flatnonzero(valid[c]):
                state, dead, mk = fns.step(state, dev.train_x, dev.train_y, step_keys[:, c, k], perm[:, c, k], dead)
                steps.append(mk)
            m = {key: np.stack([np.asarray(s[key]) for s in steps]) for key in steps[0]}
        chunks.append(m)
        if bar is not None:
            bar.update(1)
        if loop == "step" and bool(np.all(np.asarray(dead))):
            break
        if after_chunk is not None and c + 1 < perm.shape[1]:  # no within-epoch save once a replica diverged
            after_chunk(state, c + 1, chunks, jnp.any(dead & ~stopped))
    jax.block_until_ready(state)
    return state, np.asarray(dead), _concat(chunks)


# ------------------------------------------------------------------------------- checkpoints
class GroupStore:
    """The group's checkpoints (in the group's directory) and the replicas' records (in theirs)."""

    def __init__(self, cfg: TrainerConfig, meta: dict, dirs: list[Path]) -> None:
        from .checkpoint import CheckpointManager

        self.cfg, self.meta, self.dirs = cfg, meta, dirs
        self.manager = None
        if cfg.run_dir is not None and cfg.checkpoint:
            self.manager = CheckpointManager(Path(cfg.run_dir), keep=cfg.keep_checkpoints)

    def _meta(self, records: list[dict], stopped: np.ndarray, **extra: Any) -> dict:
        return {**(self.meta.get("checkpoint_meta") or {}), "replicas": len(records),
                "compile_seconds": records[0]["summary"]["compile_seconds"],
                "stopped": [int(k) for k in np.flatnonzero(stopped)], **extra}

    def write_records(self, records: list[dict]) -> None:
        """Write every replica's ``record.json`` atomically."""
        from .runs import write_json_atomic

        for d, record in zip(self.dirs, records):
            d.mkdir(parents=True, exist_ok=True)
            write_json_atomic(d / "record.json", record)

    def save(self, state, records: list[dict], epoch: int, stopped: np.ndarray) -> None:
        """Checkpoint the stacked state after ``epoch`` with every replica's epochs, then the records."""
        if self.manager is not None:
            self.manager.save(eqx.filter(state, eqx.is_array),
                              self._meta(records, stopped, epoch=epoch,
                                         replica_epochs=[r["epochs"] for r in records]), epoch)
        self.write_records(records)

    def save_partial(self, state, records: list[dict], epoch: int, chunk: int, metrics: dict, seconds: float,
                     chunks_total: int | None = None) -> None:
        """The within-epoch checkpoint (see ``pcjax.training.RunStore.save_partial``), metrics (steps, R, ...)."""
        if self.manager is not None:
            stopped = np.array([r["status"] == "diverged" for r in records])
            self.manager.save_partial(eqx.filter(state, eqx.is_array), metrics,
                                      self._meta(records, stopped, epoch=epoch, chunk=chunk, seconds=seconds,
                                                 chunks_total=chunks_total))

    def resume(self, state, records: list[dict], cfgs: list[TrainerConfig]) -> tuple:
        """(state, records, first epoch, partial epoch or None, stopped replicas) from the group's latest
        checkpoints when ``cfg.resume``; a stopped (diverged) replica keeps its record as it is."""
        stopped = np.zeros(len(records), bool)
        if not (self.cfg.resume and self.manager is not None):
            return state, records, 0, None, stopped
        from .runs import read_record

        arrays, statics = eqx.partition(state, eqx.is_array)
        restored, epoch, ck_meta, partial = self.manager.restore_latest(arrays), 0, None, None
        if restored is not None:
            arrays, ck_meta = restored
            epoch = int(ck_meta["epoch"])
        loaded = self.manager.load_partial(arrays, epoch)
        if loaded is not None:
            arrays, metrics, p_meta = loaded
            partial = PartialEpoch(int(p_meta["chunk"]), metrics, float(p_meta["seconds"]))
            ck_meta = ck_meta or {**p_meta, "replica_epochs": [[] for _ in records]}
        if ck_meta is None:
            return state, records, 0, None, stopped
        stopped[list(ck_meta.get("stopped") or [])] = True
        out = []
        for k, (record, cfg, d) in enumerate(zip(records, cfgs, self.dirs)):
            if stopped[k]:
                out.append(read_record(d) or {**record, "status": "diverged"})
                continue
            own = {"epoch": epoch, "epochs": ck_meta["replica_epochs"][k], "compile_seconds": ck_meta.get("compile_seconds")}
            out.append(_resumed_record(record, d, own, cfg))
            if partial is not None:
                out[-1]["resumes"][-1]["chunk"] = partial.chunk
        return eqx.combine(arrays, statics), out, epoch, partial, stopped


# ------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class Replicas:
    """What :func:`fit_replicas` needs per replica: its seed, run directory, record fields (``meta``,
    as ``pcjax.training.fit`` takes them), beta schedule (or None) and tracker (or None)."""

    seeds: list[int]
    dirs: list[Path]
    metas: list[dict]
    schedules: list
    trackers: list | None = None


def fit_replicas(algorithm, models: list, data: ArrayDataset, cfg: TrainerConfig, group: Replicas, *,
                 meta: dict | None = None) -> tuple[Any, list[dict]]:
    """Train ``models`` (one per replica, same architecture) with ``algorithm`` as one vmapped
    program; return (stacked state, the replicas' records). ``cfg`` is the group's trainer config
    (``run_dir``: the group's directory, where its checkpoints go; ``seed`` is replica 0's) and
    ``meta`` the group's record fields (its ``checkpoint_meta`` goes into the checkpoints). Each
    replica's record is written to its own directory as ``pcjax.training.fit`` writes a run's."""
    from .streaming import choose_placement, dataset_bytes

    t_start = time.perf_counter()
    R = len(models)
    n_bytes = dataset_bytes(data.train_x, data.train_y, data.test_x, data.test_y)
    if choose_placement(cfg.placement, n_bytes, cfg.device_memory_budget) != "device":
        raise ConfigError(f"trainer.replicas={R} needs the dataset on the device, but it ({n_bytes} bytes) exceeds the "
                          "device memory budget: set trainer.replicas=1, or raise trainer.device_memory_budget")
    dev = GroupData.place(data, group.seeds, cfg.val_fraction, cfg.eval_batch_size)
    layout = EpochLayout.of(dev.train_idx.shape[1], cfg.batch_size, cfg.chunks_per_epoch)
    compiled = _Compiled(algorithm, data, cfg.augment, data.num_classes, cfg.divergence_threshold)
    fns, loop = Vmapped(compiled), resolve_loop(cfg.loop, models[0])
    cfgs = [dataclasses.replace(cfg, seed=s, run_dir=str(d), beta_schedule=b)
            for s, d, b in zip(group.seeds, group.dirs, group.schedules)]
    records = [_replica_record(m, c, k, R, cfg) for k, (m, c) in enumerate(zip(group.metas, cfgs))]
    store = GroupStore(cfg, meta or {}, group.dirs)
    state = stack_states([algorithm.init(m) for m in models])
    state, records, start_epoch, partial, stopped = store.resume(state, records, cfgs)
    plan = group_planner(layout, group.seeds, dev.train_idx)
    compile_seconds = _warm_up(fns, loop, state, dev, layout, plan, start_epoch)
    for record in records:  # a resumed run keeps its first start-up's numbers
        summary = record["summary"]
        if summary.get("compile_seconds") is None:
            summary["compile_seconds"] = compile_seconds
        if summary.get("time_to_first_step_seconds") is None:
            summary["time_to_first_step_seconds"] = time.perf_counter() - t_start
    log.info("%d replicas (seeds %d-%d) of %d training examples in %d batches of %d per epoch; loop %s; compiled in "
             "%.2f s%s", R, group.seeds[0], group.seeds[-1], layout.n, layout.nb, cfg.batch_size, loop, compile_seconds,
             f"; continuing at epoch {start_epoch + 1}" if start_epoch or partial is not None else "")
    bar = _progress(cfg, layout, start_epoch, partial, meta, R)
    minutes = cfg.checkpoint_minutes if store.manager is not None else None
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        resumed = partial if epoch == start_epoch else None
        before = 0.0 if resumed is None else resumed.seconds
        state = _set_beta(state, group.schedules, epoch)
        saver = None if minutes is None else _PartialSaver(store, records, epoch, minutes, t_epoch, before,
                                                           layout.n_chunks)
        state, dead, metrics = run_group_epoch(fns, loop, state, dev, plan(epoch), stopped, bar, resumed=resumed,
                                               after_chunk=saver)
        seconds = before + time.perf_counter() - t_epoch
        _record_divergences(records, metrics, dead & ~stopped, epoch, cfg, algorithm, store)
        stopped = stopped | dead
        _record_epoch(fns, state, dev, metrics, (epoch, cfg.epochs), seconds, records, stopped, group.trackers)
        store.save(state, records, epoch + 1, stopped)
    if bar is not None:
        bar.close()
    for record in records:
        if record["status"] != "diverged":
            record["status"] = "complete"
            _summarise(record)
    store.write_records(records)
    _raise_divergences(records)
    return state, records


def _replica_record(meta: dict, cfg: TrainerConfig, k: int, replicas: int, group_cfg: TrainerConfig) -> dict:
    """A fresh record of replica ``k`` (as ``pcjax.training.new_record``), flagged with its group."""
    record = new_record(meta, cfg, None)
    record["hardware"]["placement"] = "device"
    record["replica"] = {"index": k, "replicas": replicas, "group_seed": group_cfg.seed, "group_dir": group_cfg.run_dir}
    return record


def _warm_up(fns: Vmapped, loop: str, state, dev: GroupData, layout: EpochLayout, plan, start_epoch: int) -> float:
    """Compile the group's step (or chunk), evaluations and epoch plan before the first epoch; the seconds."""
    t0 = time.perf_counter()
    R = dev.train_idx.shape[0]
    keys, dead = jnp.stack([data_key(0)] * R), jnp.ones((R,), bool)
    idx = np.zeros((R, layout.K, layout.batch_size), np.int32)
    if loop == "scan":
        jax.block_until_ready(fns.chunk(state, dev.train_x, dev.train_y, keys, idx, np.zeros((layout.K,), bool), dead))
    else:
        jax.block_until_ready(fns.step(state, dev.train_x, dev.train_y, keys, idx[:, 0], dead))
    fns.accuracies(state, dev)
    plan(start_epoch)
    return time.perf_counter() - t0


def _progress(cfg: TrainerConfig, layout: EpochLayout, start_epoch: int, partial: PartialEpoch | None,
              meta: dict | None, R: int) -> Any:
    """The group's progress bar over chunks (``None`` without ``cfg.progress``)."""
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    done = 0 if partial is None else partial.chunk
    name = f"{(meta or {}).get('name') or 'train'} x{R}"
    return tqdm(total=(cfg.epochs - start_epoch) * layout.n_chunks - done, desc=name, unit="chunk", leave=False)


def _set_beta(state, schedules: list, epoch: int) -> Any:
    """Each replica's beta for ``epoch`` from its schedule (unchanged without schedules)."""
    if schedules[0] is None or not hasattr(state, "beta"):
        return state
    beta = jnp.asarray([s(epoch) for s in schedules], jnp.float32)
    return eqx.tree_at(lambda s: s.beta, state, beta)


def _replica_metrics(metrics: dict, k: int) -> dict:
    """Replica ``k``'s per-step metrics out of the group's (steps, R, ...)."""
    return {key: v[:, k] for key, v in metrics.items()}


def _record_divergences(records: list[dict], metrics: dict, newly: np.ndarray, epoch: int, cfg: TrainerConfig,
                        algorithm, store: GroupStore) -> None:
    """Mark the replicas that diverged in ``epoch`` as a separate run's record is marked (status
    ``diverged``, ``divergence`` saying where, ``error`` the DivergenceError it raises) and write them."""
    from .algorithms.bp import Backprop

    for k in np.flatnonzero(newly):
        record = records[k]
        divergence, message = describe_divergence(_replica_metrics(metrics, k), epoch, cfg.divergence_threshold,
                                                  backprop=isinstance(algorithm, Backprop),
                                                  first_epoch=epoch == 0 and not record.get("resumes"))
        record["status"], record["divergence"] = "diverged", divergence
        record["error"] = f"DivergenceError: {message}"
        log.warning("replica seed %d: %s", record["seed"], message)
    if newly.any():
        store.write_records(records)


def _record_epoch(fns: Vmapped, state, dev: GroupData, metrics: dict, epochs: tuple[int, int], seconds: float,
                  records: list[dict], stopped: np.ndarray, trackers: list | None) -> None:
    """Evaluate every replica and append the entry of epoch ``epochs[0]`` (of ``epochs[1]``) to the
    records of those still training (seconds: the group's wall time); log it to each replica's tracker."""
    epoch, total = epochs
    t_eval = time.perf_counter()
    test, val = fns.accuracies(state, dev)
    eval_seconds = time.perf_counter() - t_eval
    for k, record in enumerate(records):
        if stopped[k]:
            continue
        accuracies = (float(test[k]), None if val is None else float(val[k]), eval_seconds)
        entry, trace = entry_of(_replica_metrics(metrics, k), epoch, seconds, accuracies)
        record["epochs"].append(entry)
        record["inference_trace"] = None if trace is None else trace.tolist()
        _summarise(record)
        log.info("epoch %d/%d seed %d: %s", epoch + 1, total, record["seed"], _epoch_text(entry))
        _warn_collapse(record, epoch, record["seed"])
        if trackers is not None:
            logged = {key: v for key, v in entry.items() if key != "epoch"}
            if trace is not None:
                logged["inference_trace"] = trace.tolist()
            trackers[k].log(logged, step=epoch + 1)


def _raise_divergences(records: list[dict]) -> None:
    """A DivergenceError naming every diverged replica (after the others have finished)."""
    bad = [r for r in records if r["status"] == "diverged"]
    if bad:
        lines = [f"seed {r['seed']}: {r.get('error') or r.get('divergence')}" for r in bad]
        raise DivergenceError(f"{len(bad)} of {len(records)} replicas diverged (the others completed):\n"
                              + "\n".join(lines))


# ------------------------------------------------------------------------------- from a config
def train_group(c: dict, model, algorithm, data: ArrayDataset, tc: TrainerConfig, meta: dict, run_dir: Path,
                trackers: list | None) -> list[dict]:
    """Train the replica group of the plain config ``c`` (``model``: replica 0's, built by
    ``pcjax.assemble.build``) in ``run_dir``; the replicas' records."""
    from .assemble import beta_schedule, build_model_from_config, energy_spec
    from .runs import config_fingerprint

    R, seed = check_replicas(c), int(c["seed"])
    configs = [replica_config(c, k) for k in range(R)]
    spec = energy_spec(c)
    models = [model] + [build_model_from_config(ck, data.image_shape, data.num_classes, spec) for ck in configs[1:]]
    saved = (meta.get("checkpoint_meta") or {}).get("config") or c
    metas = []
    for k, ck in enumerate(configs):
        own = replica_config(saved, k)
        metas.append({**meta, "config": ck, "checkpoint_meta": {**meta.get("checkpoint_meta", {}), "config": own,
                                                                 "config_fingerprint": config_fingerprint(own)}})
    schedules = [beta_schedule(c["algorithm"], ck["seed"]) if c["algorithm"]["name"] != "bp" else None
                 for ck in configs]
    group = Replicas([seed + k for k in range(R)], replica_dirs(run_dir, seed, R), metas, schedules, trackers)
    _, records = fit_replicas(algorithm, models, data, tc, group, meta=meta)
    return records
