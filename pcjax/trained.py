"""A trained run, loaded back from its directory: its configuration, dataset, algorithm and the
training state of its latest checkpoint, ready to predict and evaluate.

    run = pcjax.load_run("results/runs/mnist_mlp_pc_se/seed0")
    run.evaluate("test")          # the accuracy training recorded for run.epoch, recomputed
    logits = run.predict(x)       # raw images in the dataset's layout (uint8 or float), shape (N, ...)

Everything is rebuilt from the ``config`` in the run's ``record.json`` (the dataset is read from
``dataset.root`` / ``PCJAX_DATA_DIR`` as training read it), so a run keeps working after its source
tree moved on only as far as its configuration still builds. Evaluation goes through training's own
compiled evaluation (the same centre crop and normalisation, the same ``eval_step``), so
``evaluate`` reproduces the record's accuracy for the checkpoint's epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PCJaxError


class RunLoadError(PCJaxError, FileNotFoundError):
    """A run directory that cannot be loaded: no record, or no checkpoint."""


@dataclasses.dataclass
class TrainedRun:
    """A run loaded by :func:`load_run`. ``state`` is the algorithm's training state after ``epoch``
    epochs; ``config`` the run's configuration (a plain dict); ``record`` its ``record.json``."""

    run_dir: Path
    config: dict
    record: dict
    data: Any
    algorithm: Any
    state: Any
    epoch: int
    trainer: Any  # the run's TrainerConfig

    @functools.cached_property
    def compiled(self):
        """Training's compiled evaluation for this run (``pcjax.training._Compiled``: ``prep_eval``, ``evaluate``)."""
        from .training import _Compiled

        return _Compiled(self.algorithm, self.data, self.trainer.augment, self.data.num_classes)

    @functools.cached_property
    def _predict_fn(self):
        import equinox as eqx

        prep, step = self.compiled.prep_eval, self.algorithm.eval_step  # built outside the trace
        return eqx.filter_jit(lambda st, xb: step(st, prep(xb)))

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of split ``name``: ``"test"``, ``"val"`` (the run's validation hold-out,
        drawn with its seed) or ``"train"`` (the rest of the training set)."""
        from .data import split_validation

        if name == "test":
            return self.data.test_x, self.data.test_y
        train, (val_x, val_y) = split_validation(self.data, self.trainer.val_fraction, self.trainer.seed)
        if name == "val":
            return val_x, val_y
        if name == "train":
            return train.train_x, train.train_y
        raise ValueError(f"unknown split {name!r}: use 'test', 'val' or 'train'")

    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """The network's output (logits, shape (N, classes)) for raw images ``x`` in the dataset's
        layout, with training's evaluation preparation (centre crop when the run cropped, then the
        dataset's normalisation) and the algorithm's ``eval_step``, in batches of ``batch_size``."""
        import jax.numpy as jnp

        x = np.asarray(x)
        shape = tuple(self.data.train_x.shape[1:])
        if x.shape[1:] != shape:
            raise ValueError(f"predict expects images of shape (N, {', '.join(map(str, shape))}) like the run's "
                             f"dataset ({self.config['dataset']['name']}), got {x.shape}")
        bs = int(batch_size or self.trainer.eval_batch_size)
        outs = [np.asarray(self._predict_fn(self.state, jnp.asarray(x[i:i + bs]))) for i in range(0, len(x), bs)]
        return np.concatenate(outs) if outs else np.zeros((0, self.data.num_classes), np.float32)

    def evaluate(self, split: str = "test") -> float:
        """Accuracy on ``split`` (see :meth:`split`) through training's compiled evaluation."""
        from .data.pipeline import eval_batches

        xs, ys = self.split(split)
        if xs.shape[0] == 0:
            raise ValueError(f"the run has no {split} split (trainer.val_fraction={self.trainer.val_fraction})")
        idx, mask = eval_batches(xs.shape[0], self.trainer.eval_batch_size)
        import jax.numpy as jnp

        return float(self.compiled.evaluate(self.state, jnp.asarray(xs), jnp.asarray(ys), idx, mask))

    def recorded(self, key: str = "test_acc") -> float | None:
        """What training recorded under ``key`` for this checkpoint's epoch (None if absent)."""
        for e in self.record.get("epochs", []):
            if e.get("epoch") == self.epoch:
                return e.get(key)
        return None


def _set(c: dict, dotted: str, value: Any) -> None:
    """``c[a][b]... = value`` for ``dotted`` = ``a.b...``; every key but the last must exist."""
    *path, last = dotted.split(".")
    node = c
    for i, key in enumerate(path):
        if not isinstance(node.get(key), dict):
            raise RunLoadError(f"override {dotted}: the run's config has no section {'.'.join(path[:i + 1])}")
        node = node[key]
    node[last] = value


def load_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainedRun:
    """Load the run in ``run_dir`` (the folder holding ``record.json`` and the checkpoints, e.g.
    ``results/runs/<row>/seed0`` or a Hydra output folder) at its latest checkpoint; a replica of a
    group trained as one vmapped program (``trainer.replicas=K``) is row ``index`` of its group's
    checkpoint, in ``replica.group_dir`` (or the replica folder's parent, where it normally is). Raises
    :class:`RunLoadError` naming what is missing and how to get it.

    ``overrides`` (``{"algorithm.T": 128}``) change the run's configuration before the algorithm is
    rebuilt, e.g. to probe the trained weights with another inference budget; they must leave the
    training state's structure as it is (the checkpoint is loaded into it)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from .checkpoint import CheckpointManager
    from .experiment import _data_and_parts, trainer_config

    run_dir = Path(run_dir)
    rec_path = run_dir / "record.json"
    if not rec_path.is_file():
        raise RunLoadError(f"{rec_path} not found: pass a run directory (the one holding record.json, e.g. "
                           "results/runs/<row>/seed0 or outputs/<name>/<time>)")
    try:
        record = json.loads(rec_path.read_text())
    except json.JSONDecodeError as err:
        raise RunLoadError(f"{rec_path} is not valid JSON ({err}): the record is damaged") from err
    c = record.get("config")
    if not isinstance(c, dict):
        raise RunLoadError(f"{rec_path} holds no config: it was written by a run that stopped before it started "
                           "training; rerun it")
    if overrides:
        c = copy.deepcopy(c)
        for key, value in overrides.items():
            _set(c, key, value)
    replica = record.get("replica") or {}
    data, model, algo = _data_and_parts(c, c["trainer"]["epochs"])
    state = algo.init(model)
    arrays, statics = eqx.partition(state, eqx.is_array)
    if replica.get("group_dir"):  # trained as one of a vmapped group: its arrays are row k of the group's
        k, K, ck_dir = int(replica["index"]), int(replica["replicas"]), Path(replica["group_dir"])
        if not ck_dir.is_dir() and (run_dir.parent / "latest").exists():
            ck_dir = run_dir.parent  # the group folder was moved together with its replicas
        stacked = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (K, *a.shape)), arrays)
        restored = CheckpointManager(ck_dir).restore_latest(stacked)
        if restored is not None:
            restored = (jax.tree_util.tree_map(lambda a: a[k], restored[0]), restored[1])
    else:
        ck_dir = run_dir
        restored = CheckpointManager(run_dir).restore_latest(arrays)
    if restored is None:
        raise RunLoadError(f"{ck_dir} holds no checkpoint ('latest' missing): the run must have been trained "
                           "with trainer.checkpoint=true and its checkpoint files kept (they are not in git)")
    arrays, meta = restored
    cfg = trainer_config(c, algo, run_dir, resume=False)
    return TrainedRun(run_dir=run_dir, config=c, record=record, data=data, algorithm=algo,
                      state=eqx.combine(arrays, statics), epoch=int(meta["epoch"]), trainer=cfg)
