"""The PCX library's PC training step on a pcjax network (same weights, same algorithm).

``PCXRunner(net, ...)`` builds a PCX model (``pxc.EnergyModule`` with one ``pxc.Vode`` per
latent node, ``pxnn.Linear`` / ``pxnn.Conv2d`` / ``pxnn.MaxPool2d`` layers) that computes the same
predictions as the pcjax ``Network`` ``net``, with its weights copied, and trains it the way the
PCX examples do (``examples/s6_computational_resources/time_benchmarking`` of the PCX repository,
written against PCX 0.6):

* the model runs per sample under ``pxf.vmap`` (images are C, H, W per sample);
* ``STATUS.INIT`` forward pass initialises every vode to its prediction; the output vode is frozen
  and set to ``u - beta (u - y)``;
* T inference steps, a Python loop unrolled under ``pxf.jit``: ``pxf.value_and_grad`` of the
  batch-summed energy (``jax.lax.psum`` over the vmapped batch) w.r.t. the non-frozen vodes,
  ``optim_h.step`` (optax SGD with momentum, state re-initialised every batch);
* one weight step: gradient of the same energy w.r.t. the ``LayerParam`` s, ``optim_w.step`` with
  ``scale_by = 1 / (beta * batch)`` (AdamW with the pcjax schedule).

This matches pcjax's ``PC`` step (latent gradient of the batch-summed energy, weight gradient of
the batch mean). PCX is optional: ``available()`` says whether ``import pcx`` works (``pip install
--no-deps pcx==0.6.3`` runs on current JAX and equinox).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import hwc_perm

try:  # optional dependency
    import pcx as px
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu
except Exception:  # pragma: no cover - exercised when pcx is absent or broken
    px = None  # type: ignore[assignment]


def available() -> bool:
    """Whether PCX is importable."""
    return px is not None


def version() -> str | None:
    """The installed PCX version, if any."""
    if px is None:
        return None
    try:
        from importlib.metadata import version as _v

        return _v("pcx")
    except Exception:  # noqa: BLE001
        return "unknown"


def _require() -> None:
    if px is None:
        raise ImportError("the PCX comparison needs pcx: pip install --no-deps pcx==0.6.3")


def _act(name: str) -> Callable:
    from pcjax.blocks import get_activation

    return get_activation(name)


# ------------------------------------------------------------------------------ blocks (per sample)
if px is not None:

    class PDense(px.Module):
        """pcjax ``Dense`` per sample: act(scale * W flatten(x) + b); image inputs arrive as (C, H, W)."""

        def __init__(self, block):
            super().__init__()
            in_perm, out_perm = hwc_perm(block.in_shape), hwc_perm(block.out_shape)
            n_in, n_out = len(in_perm), len(out_perm)
            scale = float(block.scale)
            if scale != 1.0 and block.bias is not None:
                raise NotImplementedError("a scaled Dense block with a bias has no PCX counterpart here")
            self.linear = pxnn.Linear(n_in, n_out, bias=block.bias is not None)
            w = np.asarray(block.weight)[in_perm][:, out_perm]
            self.linear.nn.weight.set(jnp.asarray(w.T))
            if block.bias is not None:
                self.linear.nn.bias.set(jnp.asarray(np.asarray(block.bias).reshape(-1)[out_perm]))
            self.scale = px.static(scale)
            self.act = px.static(_act(block.act))
            out = tuple(block.out_shape)
            self.out_shape = px.static((out[2], out[0], out[1]) if len(out) == 3 else out)

        def __call__(self, x):
            y = self.linear(x.flatten())
            if self.scale.get() != 1.0:
                y = self.scale.get() * y
            return self.act.get()(y).reshape(self.out_shape.get())

    class PConv(px.Module):
        """pcjax ``Conv`` per sample (C, H, W): pool(act(conv(x) + b)) with ``pxnn.Conv2d`` and ``pxnn.MaxPool2d``."""

        def __init__(self, block):
            super().__init__()
            k, _, cin, cout = block.weight.shape
            self.conv = pxnn.Conv2d(cin, cout, kernel_size=(k, k), stride=(block.stride, block.stride),
                                    padding=(block.padding, block.padding), use_bias=block.bias is not None)
            self.conv.nn.weight.set(jnp.asarray(np.asarray(block.weight).transpose(3, 2, 0, 1)))
            if block.bias is not None:
                self.conv.nn.bias.set(jnp.asarray(np.asarray(block.bias).reshape(cout, 1, 1)))
            self.act = px.static(_act(block.act))
            if block.pool == "max":
                self.pool = pxnn.MaxPool2d(kernel_size=block.pool_size, stride=block.pool_size)
            elif block.pool == "avg":
                self.pool = pxnn.AvgPool2d(kernel_size=block.pool_size, stride=block.pool_size)
            else:
                self.pool = None

        def __call__(self, x):
            y = self.act.get()(self.conv(x))
            return y if self.pool is None else self.pool(y)

    class PAvgPoolDense(px.Module):
        """pcjax ResNet head per sample: W mean_{h,w}(x) + b."""

        def __init__(self, block):
            super().__init__()
            self.dense = PDense(block.dense)

        def __call__(self, x):
            return self.dense(x.mean(axis=(1, 2)))

    class PScale(px.Module):
        def __init__(self, c: float):
            super().__init__()
            self.c = px.static(float(c))

        def __call__(self, x):
            return x if self.c.get() == 1.0 else self.c.get() * x


def convert_block(block):
    """The PCX module computing the same per-sample map as a pcjax block or skip projection."""
    _require()
    from pcjax.blocks import Conv, Dense, Identity, Scale
    from pcjax.models.resnet import AvgPoolDense

    if isinstance(block, Dense):
        return PDense(block)
    if isinstance(block, Conv):
        return PConv(block)
    if isinstance(block, AvgPoolDense):
        return PAvgPoolDense(block)
    if isinstance(block, Identity):
        return PScale(1.0)
    if isinstance(block, Scale):
        return PScale(block.c)
    raise NotImplementedError(f"no PCX counterpart for block {type(block).__name__}")


if px is not None:

    class PCXNet(pxc.EnergyModule):
        """A pcjax ``Network`` as a PCX energy module: node l is ``vodes[l-1](f_l(z_{l-1}) + skips)``."""

        def __init__(self, net):
            super().__init__()
            if net.backward_nodes:
                raise NotImplementedError("the PCX adapter has no top-down predictors")
            self.blocks = [convert_block(b) for b in net.blocks]
            self.skips = [convert_block(s) for s in net.skips]
            self.skip_edges = px.static(tuple(net.skip_edges))
            L = len(net.blocks)
            self.vodes = [pxc.Vode() for _ in range(L - 1)] + [pxc.Vode(pxc.se_energy)]
            self.vodes[-1].h.frozen = True

        def __call__(self, x, y=None, beta=1.0):
            values = [x]
            for l, block in enumerate(self.blocks, start=1):
                mu = block(values[l - 1])
                for (s, t), proj in zip(self.skip_edges.get(), self.skips):
                    if t == l:
                        mu = mu + proj(values[s])
                values.append(self.vodes[l - 1](mu))
            if y is not None:
                u = self.vodes[-1].get("u")
                self.vodes[-1].set("h", u - beta * (u - y))
            return self.vodes[-1].get("u")

    def _mask():
        return pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))

    @pxf.vmap(_mask(), in_axes=(0, 0), out_axes=0)
    def _forward(x, y, *, model, beta=1.0):
        return model(x, y, beta=beta)

    @pxf.vmap(_mask(), in_axes=(0,), out_axes=0)
    def _predict(x, *, model):
        return model(x, None)

    @pxf.vmap(_mask(), in_axes=(0,), out_axes=(None, 0), axis_name="batch")
    def _energy(x, *, model):
        y_ = model(x, None)
        return jax.lax.psum(model.energy(), "batch"), y_

    @pxf.jit(static_argnums=(0, 1))
    def _train_on_batch(T: int, beta: float, x, y, *, model, optim_w, optim_h):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            _forward(x, y, model=model, beta=beta)
        optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(
                    _energy
                )(x, model=model)
            optim_h.step(model, g["model"])
        optim_h.clear()
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, _), g = pxf.value_and_grad(pxu.M_hasnot(pxnn.LayerParam).to([False, True]), has_aux=True)(_energy)(
                x, model=model
            )
        optim_w.step(model, g["model"], scale_by=1.0 / (beta * x.shape[0]))
        return e / x.shape[0]

    @pxf.jit()
    def _energy_at(x, y, latents, *, model):
        """Batch-mean energy with the free vodes set to ``latents`` and the output clamped to y."""
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            _forward(x, y, model=model)
        for v, z in zip(model.vodes[:-1], latents):
            v.h.set(z)
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            e, _ = _energy(x, model=model)
        return e / x.shape[0]


def to_pcx_node(a) -> jax.Array:
    """A batched pcjax node value (B, H, W, C) as PCX's per-sample layout (B, C, H, W)."""
    return jnp.transpose(a, (0, 3, 1, 2)) if a.ndim == 4 else a


def from_pcx_node(a) -> jax.Array:
    return jnp.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


class PCXRunner:
    """PCX model + optimisers for one network; ``train_step(x, y)`` is one jitted PC step.

    ``x`` is given in pcjax layout (NHWC images) and transposed once; the timed step takes the
    already-transposed batch (``prepare``).
    """

    def __init__(self, net, *, T: int, latent_lr: float, latent_momentum: float = 0.0, nesterov: bool = False,
                 weight_optim, total_steps: int = 1000, beta: float = 1.0, output: str = "gaussian",
                 latent_grad: str = "sample", batch_size: int = 2):
        _require()
        from pcjax.energies import get_energy

        if get_energy(output) is not get_energy("gaussian"):
            raise NotImplementedError("the PCX adapter implements the Gaussian (PC-SE) output energy")
        if latent_grad != "sample":
            raise NotImplementedError("the PCX adapter uses the batch-summed energy for the latents")
        import optax

        self.T, self.beta = int(T), float(beta)
        self.model = PCXNet(net)
        self._input_shape = tuple(_pcx_shape(net.input_shape))
        self._resize(batch_size)
        schedule = weight_optim.learning_rate(total_steps)
        wd = weight_optim.weight_decay if weight_optim.name == "adamw" else 0.0
        if weight_optim.name not in ("adamw", "adam") or weight_optim.grad_clip:
            raise NotImplementedError("the PCX adapter implements the adamw / adam weight optimisers")
        b1, b2 = weight_optim.b1, weight_optim.b2
        self.optim_h = pxu.Optim(lambda: optax.sgd(latent_lr, momentum=latent_momentum or None, nesterov=nesterov))
        self.optim_w = pxu.Optim(lambda: optax.adamw(schedule, b1=b1, b2=b2, weight_decay=wd),
                                 pxu.M(pxnn.LayerParam)(self.model))

    def _resize(self, batch_size: int) -> None:
        """(Re)create the vode values for ``batch_size`` samples, as the PCX examples do before training."""
        self.model.clear_params(pxc.VodeParam)
        dummy = jnp.zeros((batch_size,) + self._input_shape, jnp.float32)
        with pxu.step(self.model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            _forward(dummy, None, model=self.model)
        self._batch = batch_size

    def prepare(self, x) -> jax.Array:
        """pcjax-layout batch -> PCX layout (and vode values sized for it)."""
        x = to_pcx_node(jnp.asarray(x))
        if x.shape[0] != self._batch:
            self._resize(x.shape[0])
        return x

    def train_step(self, x, y) -> jax.Array:
        """One PC step on a prepared batch; returns the batch-mean energy at the relaxed latents."""
        return _train_on_batch(self.T, self.beta, x, y, model=self.model, optim_w=self.optim_w,
                               optim_h=self.optim_h)

    def latents(self) -> tuple:
        """Current free vode values in pcjax layout (after a step: the relaxed latents)."""
        return tuple(from_pcx_node(v.h.get()) for v in self.model.vodes[:-1])

    def feedforward(self, x) -> tuple:
        """Feed-forward node values in pcjax layout."""
        with pxu.step(self.model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            _predict(self.prepare(x), model=self.model)
        return tuple(from_pcx_node(v.h.get()) for v in self.model.vodes)  # INIT copies u into h

    def energy(self, x, y, latents) -> jax.Array:
        """Batch-mean energy of pcjax-layout ``latents`` (free nodes) with the output clamped to y."""
        return _energy_at(self.prepare(x), y, tuple(to_pcx_node(z) for z in latents), model=self.model)


def _pcx_shape(shape):
    shape = tuple(shape)
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape


__all__ = ["available", "version", "PCXRunner", "convert_block", "to_pcx_node", "from_pcx_node"]
