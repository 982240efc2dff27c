"""A PCX training loop: PC-SE with PCX's own model, vodes, optimisers and epoch loop.

Modelled on the PCX examples (``examples/discriminative_experiments/MLP/*/PC_SE.py`` of the PCX
repository): a ``pxc.EnergyModule`` with one ``pxc.Vode`` per latent node (the output vode frozen
and set to ``u - beta (u - y)``), ``optim_h = pxu.Optim(sgd(x_lr, momentum))`` re-initialised every
batch, ``optim_w = pxu.Optim(adamw(warmup-cosine schedule, wd))`` on the ``pxnn.LayerParam`` s, a
``pxf.jit`` ``train_on_batch`` (T inference steps unrolled, then one weight step) dispatched from a
Python loop over the batches, and a ``pxf.jit`` ``eval_on_batch`` (``STATUS.INIT`` forward pass,
arg-max of the output). The model and the jitted training step come from ``benchmarks.pcx_adapter``
(``PCXNet``: the pcjax network's blocks as ``pxnn.Linear`` / ``pxnn.Conv2d`` layers with its
weights copied, so that every competitor starts from the same weights; ``_train_on_batch``); the
optimisers are built here. Compilation runs on the training model itself (two steps and
evaluations), whose initial state is then put back from a ``jax.tree_util`` snapshot: a second
model would not share the compiled step (``pxf.jit`` keys its cache on static values such as the
weight optimiser's parameter filter, which differ between two models).

One difference from the published scripts, on purpose: they reduce the batch's energies with
``jax.lax.pmean`` inside ``pxf.vmap``; on current JAX the gradient of that mean with respect to
a sample's vode is 1/B of the sample's own energy gradient (checked in
``tests/test_bench_time_to_accuracy.py``), which would shrink the tuned latent rate's steps
B-fold. The loop reduces with ``psum`` (``reduce="psum"``, the adapter's convention and pcjax's
``latent_grad="sample"``: every sample's latents follow its own energy), and scales the weight
gradient by 1/(beta B), i.e. the batch mean. ``reduce="pmean"`` runs the published reduction.

Data: the same training split, batches (``fit``'s per-epoch permutation from the seed) and
augmentation keys as ``pcjax.training.fit``, normalised on the device; each step gathers its batch
with one jitted call, as a data loader would hand it over.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import pcx_adapter as pa

if pa.available():
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    def _mask():
        return pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))

    @pxf.vmap(_mask(), in_axes=(0,), out_axes=0)
    def _forward(x, *, model):
        return model(x, None)

    @pxf.jit()
    def eval_on_batch(x, *, model):
        """Arg-max of the feed-forward output (``STATUS.INIT`` sets every vode to its prediction)."""
        model.eval()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            out = _forward(x, model=model)
        return out.argmax(axis=-1)

    @pxf.vmap(_mask(), in_axes=(0,), out_axes=(None, 0), axis_name="batch")
    def _energy_mean(x, *, model):
        y_ = model(x, None)
        return jax.lax.pmean(model.energy(), "batch"), y_

    @pxf.jit(static_argnums=(0, 1))
    def train_on_batch_pmean(T: int, beta: float, x, y, *, model, optim_w, optim_h):
        """The published scripts' step: energies reduced with ``pmean``, weight step scaled by 1/beta."""
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            pa._forward(x, y, model=model, beta=beta)
        optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]),
                                          has_aux=True)(_energy_mean)(x, model=model)
            optim_h.step(model, g["model"])
        optim_h.clear()
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, _), g = pxf.value_and_grad(pxu.M_hasnot(pxnn.LayerParam).to([False, True]), has_aux=True)(
                _energy_mean)(x, model=model)
        optim_w.step(model, g["model"], scale_by=1.0 / beta)
        return e


@dataclass
class EpochLog:
    epoch: int
    test_acc: float
    seconds: float        # training steps only (data gathering included), ends with a device sync
    eval_seconds: float


@dataclass
class PCXResult:
    epochs: list = field(default_factory=list)
    compile_s: float | None = None


class _Runner:
    """A PCX model (``PCXNet``: vodes and layers) with its inference and weight optimisers."""

    def __init__(self, net, T, beta, batch_size, sgd_fn, adamw_fn):
        self.T, self.beta = int(T), float(beta)
        self.model = pa.PCXNet(net)
        self._input_shape = tuple(pa._pcx_shape(net.input_shape))
        self._resize(batch_size)
        self.optim_h = pxu.Optim(sgd_fn)
        self.optim_w = pxu.Optim(adamw_fn, pxu.M(pxnn.LayerParam)(self.model))

    def _resize(self, batch_size: int) -> None:
        """(Re)create the vode values for ``batch_size`` samples, as the PCX examples do before training."""
        self.model.clear_params(pxc.VodeParam)
        with pxu.step(self.model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            _forward(jnp.zeros((batch_size,) + self._input_shape, jnp.float32), model=self.model)

    def train_step(self, x, y):
        return pa._train_on_batch(self.T, self.beta, x, y, model=self.model, optim_w=self.optim_w,
                                  optim_h=self.optim_h)


def _fit_batches(n: int, batch: int, chunks_per_epoch: int):
    """fit's chunking: K steps per chunk, n_chunks chunks."""
    nb = n // batch
    K = math.ceil(nb / min(chunks_per_epoch, nb))
    return nb, K, math.ceil(nb / K)


def train_pcx(net, data, *, T: int, latent_lr: float, latent_momentum: float, weight_optim, epochs: int,
              batch_size: int, seed: int, val_fraction: float = 0.1, chunks_per_epoch: int = 4,
              augment_spec=None, eval_batch_size: int = 1000, total_epochs: int | None = None,
              target: float | None = None, reduce: str = "psum", beta: float = 1.0, log=print) -> PCXResult:
    """Train ``net`` (a pcjax Network, converted to PCX) with PCX on ``data`` (an ArrayDataset);
    evaluate the test accuracy after every epoch; stop after ``epochs`` or once ``target`` is met.

    The schedule spans ``total_epochs`` (default ``epochs``) epochs, as ``fit``'s does. Compilation
    (the first training step and evaluation, minus their second calls, then the initial state put
    back) is timed apart and excluded from the epoch times.
    """
    from pcjax.data import split_validation
    from pcjax.data.pipeline import AugmentSpec, augment, center_crop, epoch_permutation, eval_batches, normalize
    from pcjax.training import data_key

    if not pa.available():
        raise ImportError("the PCX loop needs pcx: pip install --no-deps pcx==0.6.3")
    if reduce not in ("psum", "pmean"):
        raise ValueError(f"reduce must be psum or pmean, got {reduce!r}")
    spec = augment_spec or AugmentSpec()
    train, _ = split_validation(data, val_fraction, seed)
    n = train.train_x.shape[0]
    nb, K, n_chunks = _fit_batches(n, batch_size, chunks_per_epoch)
    steps = nb * (total_epochs or epochs)
    mean, std = jnp.asarray(data.mean, jnp.float32), jnp.asarray(data.std, jnp.float32)
    tx, ty = jnp.asarray(train.train_x), jnp.asarray(train.train_y)
    ex, ey = jnp.asarray(data.test_x), np.asarray(data.test_y)
    classes = data.num_classes

    @jax.jit
    def train_batch(key, idx):
        xb = normalize(augment(key, tx[idx], spec), mean, std)
        return pa.to_pcx_node(xb), jax.nn.one_hot(ty[idx], classes)

    @jax.jit
    def eval_batch(idx):
        xb = ex[idx]
        if spec.crop_size is not None:
            xb = center_crop(xb, spec.crop_size)
        return pa.to_pcx_node(normalize(xb, mean, std))

    test_idx, test_mask = eval_batches(ex.shape[0], eval_batch_size)

    sgd = optax.sgd(latent_lr, momentum=latent_momentum or None)
    wd = weight_optim.weight_decay if weight_optim.name == "adamw" else 0.0
    if weight_optim.name not in ("adamw", "adam") or weight_optim.grad_clip:
        raise NotImplementedError("the PCX loop implements the adamw / adam weight optimisers")
    adamw = optax.adamw(weight_optim.learning_rate(steps), b1=weight_optim.b1, b2=weight_optim.b2, weight_decay=wd)

    def sgd_fn():
        return sgd

    def adamw_fn():
        return adamw

    def make_runner():
        return _Runner(net, T, beta, batch_size, sgd_fn, adamw_fn)

    def step(runner, xb, yb):
        if reduce == "psum":
            return runner.train_step(xb, yb)
        return train_on_batch_pmean(runner.T, runner.beta, xb, yb, model=runner.model, optim_w=runner.optim_w,
                                    optim_h=runner.optim_h)

    def evaluate(runner):
        runner._resize(eval_batch_size)
        correct = 0
        for b in range(test_idx.shape[0]):
            pred = np.asarray(eval_on_batch(eval_batch(test_idx[b]), model=runner.model))
            correct += int(((pred == ey[test_idx[b]]) & test_mask[b]).sum())
        runner._resize(batch_size)
        return correct / int(test_mask.sum())

    # compilation: two training steps and evaluations of the model, whose initial state (weights, vodes,
    # optimiser states) is then put back; and the loop's small eager operations (permutation, keys)
    runner = make_runner()
    leaves, treedef = jax.tree_util.tree_flatten((runner.model, runner.optim_h, runner.optim_w))
    t_ops = time.perf_counter()
    ekey = jax.random.fold_in(data_key(seed), 0)
    pkey, akey = jax.random.split(ekey)
    np.asarray(epoch_permutation(pkey, n, batch_size))
    keys = jax.random.split(jax.random.fold_in(akey, 0), K)
    xb, yb = train_batch(keys[0], jnp.arange(batch_size, dtype=jnp.int32))
    jax.block_until_ready(xb)
    ops_s = time.perf_counter() - t_ops
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        jax.block_until_ready(step(runner, xb, yb))
        t1 = time.perf_counter()
        evaluate(runner)
        times.append((t1 - t0, time.perf_counter() - t1))
    result = PCXResult(compile_s=ops_s + max(times[0][0] - times[1][0], 0.0) + max(times[0][1] - times[1][1], 0.0))
    runner.model, runner.optim_h, runner.optim_w = jax.tree_util.tree_unflatten(treedef, leaves)

    base_key = data_key(seed)  # fit's data stream: the same batch order and augmentation keys
    for epoch in range(epochs):
        t0 = time.perf_counter()
        ekey = jax.random.fold_in(base_key, epoch)
        pkey, akey = jax.random.split(ekey)
        perm = np.asarray(epoch_permutation(pkey, n, batch_size))
        e = None
        for c in range(n_chunks):
            keys = jax.random.split(jax.random.fold_in(akey, c), K)
            for k in range(K):
                b = c * K + k
                if b >= nb:
                    break
                xb, yb = train_batch(keys[k], perm[b])
                e = step(runner, xb, yb)
        jax.block_until_ready(e)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        acc = evaluate(runner)
        entry = EpochLog(epoch + 1, acc, seconds, time.perf_counter() - t1)
        result.epochs.append(entry)
        log(f"    pcx_pc epoch {epoch + 1}: test {acc:.4f}, {seconds:.2f} s (+{entry.eval_seconds:.2f} s eval)")
        if not np.isfinite(float(e)):
            log("    pcx_pc: the energy became non-finite; stopping")
            break
        if target is not None and acc >= target:
            break
    return result


__all__ = ["train_pcx", "PCXResult", "EpochLog"]
