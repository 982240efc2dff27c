"""PyTorch eager reference implementation of PC training on a pcjax network.

``TorchNet.from_pcjax(net)`` copies the weights of a pcjax ``Network`` (Dense / Conv blocks, the
ResNet head ``AvgPoolDense``, skip edges with Identity / Scale / 1x1 Conv / Dense projections) into
torch modules that compute exactly the same predictions, in PyTorch's NCHW layout:

* conv weights HWIO -> OIHW; image nodes (H, W, C) -> (C, H, W);
* a Dense block that flattens an image node gets its input rows permuted so that flattening NCHW
  gives the same result as flattening NHWC in pcjax (likewise for image-shaped outputs);
* ``gelu`` is the tanh approximation (``jax.nn.gelu``'s default).

``TorchPC`` is the PC step of ``pcjax.PC`` (variant ``pc``, clamped output, Gaussian hidden
energy): feed-forward init, output z_L := mu_L - beta (mu_L - y), T steps of SGD with momentum
on the free latents (gradient of the batch-summed energy, optimiser state fresh every batch),
then one AdamW step on the weights from the batch-mean energy at the relaxed latents, scaled by
1/beta. ``TorchBP`` is backprop on the same network with the same weight optimiser.

torch is an optional dependency (the ``bench`` extra): import this module only when it is
installed (``available()`` tells).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import hwc_perm

try:  # optional dependency
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - exercised when torch is absent
    torch = None  # type: ignore[assignment]


def available() -> bool:
    """Whether PyTorch is importable."""
    return torch is not None


def _require() -> None:
    if torch is None:
        raise ImportError("the PyTorch reference needs torch: pip install 'pcjax[bench]'")


# ----------------------------------------------------------------------------------------- layout
def to_torch_node(a, dtype=None) -> "torch.Tensor":
    """A batched pcjax node value (B, H, W, C) or (B, D) as a torch tensor in NCHW / (B, D)."""
    _require()
    arr = np.array(a)
    if arr.ndim == 4:
        arr = arr.transpose(0, 3, 1, 2)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t if dtype is None else t.to(dtype)


def from_torch_node(t: "torch.Tensor") -> np.ndarray:
    """Inverse of ``to_torch_node``."""
    t = t.detach()
    arr = (t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)).cpu().numpy()
    if arr.ndim == 4:
        arr = arr.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(arr)


def _act(name: str) -> Callable:
    _require()
    table = {
        "identity": lambda x: x,
        "relu": F.relu,
        "gelu": lambda x: F.gelu(x, approximate="tanh"),
        "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
        "tanh": torch.tanh,
        "hard_tanh": F.hardtanh,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
    }
    try:
        return table[name]
    except KeyError:
        raise NotImplementedError(f"activation {name!r} has no torch counterpart here") from None


def _param(a) -> "nn.Parameter":
    arr = np.array(a)
    return nn.Parameter(torch.from_numpy(arr if arr.dtype == np.float64 else arr.astype(np.float32)))


# ----------------------------------------------------------------------------------------- blocks
if torch is not None:

    class TDense(nn.Module):
        """pcjax ``Dense``: act(scale * flatten(x) @ W + b), reshaped to the output node shape."""

        def __init__(self, block):
            super().__init__()
            in_perm, out_perm = hwc_perm(block.in_shape), hwc_perm(block.out_shape)
            w = np.asarray(block.weight)[in_perm][:, out_perm]  # (n_in, n_out) in torch order
            self.weight = _param(w.T)  # nn.Linear layout (n_out, n_in)
            self.bias = None if block.bias is None else _param(np.asarray(block.bias).reshape(-1)[out_perm])
            self.scale = float(block.scale)
            self.act = _act(block.act)
            self.out_shape = tuple(block.out_shape)
            self._in_perm, self._out_perm = in_perm, out_perm

        def linear(self, x):
            y = F.linear(x.flatten(1), self.weight)
            return y * self.scale if self.scale != 1.0 else y

        def forward(self, x):
            y = self.linear(x)
            if self.bias is not None:
                y = y + self.bias
            y = self.act(y)
            if len(self.out_shape) == 3:
                h, w, c = self.out_shape
                y = y.reshape(y.shape[0], c, h, w)
            return y

        def to_pcjax(self) -> dict:
            w = self.weight.detach().cpu().numpy().T  # (n_in, n_out), torch order
            inv_in, inv_out = np.argsort(self._in_perm), np.argsort(self._out_perm)
            out = {"weight": w[inv_in][:, inv_out]}
            if self.bias is not None:
                out["bias"] = self.bias.detach().cpu().numpy()[inv_out]
            return out

    class TConv(nn.Module):
        """pcjax ``Conv``: pool(act(conv(x) + b)) on NCHW tensors."""

        def __init__(self, block):
            super().__init__()
            self.weight = _param(np.asarray(block.weight).transpose(3, 2, 0, 1))  # HWIO -> OIHW
            self.bias = None if block.bias is None else _param(block.bias)
            self.stride, self.padding = int(block.stride), int(block.padding)
            self.act = _act(block.act)
            self.pool, self.pool_size = block.pool, int(block.pool_size)

        def forward(self, x):
            y = self.act(F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding))
            if self.pool == "max":
                y = F.max_pool2d(y, self.pool_size)
            elif self.pool == "avg":
                y = F.avg_pool2d(y, self.pool_size)
            return y

        def to_pcjax(self) -> dict:
            out = {"weight": self.weight.detach().cpu().numpy().transpose(2, 3, 1, 0)}
            if self.bias is not None:
                out["bias"] = self.bias.detach().cpu().numpy()
            return out

    class TAvgPoolDense(nn.Module):
        """pcjax ResNet head ``AvgPoolDense``: W mean_{h,w}(x) + b."""

        def __init__(self, block):
            super().__init__()
            self.dense = TDense(block.dense)

        def forward(self, x):
            return self.dense(x.mean(dim=(2, 3)))

        def to_pcjax(self) -> dict:
            return {"dense": self.dense.to_pcjax()}

    class TScale(nn.Module):
        def __init__(self, c: float):
            super().__init__()
            self.c = float(c)

        def forward(self, x):
            return x if self.c == 1.0 else self.c * x

        def to_pcjax(self) -> dict:
            return {}


def convert_block(block) -> "nn.Module":
    """The torch module computing the same map as a pcjax block or skip projection."""
    _require()
    from pcjax.blocks import Conv, Dense, Identity, Scale
    from pcjax.models.resnet import AvgPoolDense

    if isinstance(block, Dense):
        return TDense(block)
    if isinstance(block, Conv):
        return TConv(block)
    if isinstance(block, AvgPoolDense):
        return TAvgPoolDense(block)
    if isinstance(block, Identity):
        return TScale(1.0)
    if isinstance(block, Scale):
        return TScale(block.c)
    raise NotImplementedError(f"no torch counterpart for block {type(block).__name__}")


def _is_ce(name) -> bool:
    from pcjax.energies import get_energy

    return get_energy(name) is get_energy("cross_entropy")


def _energy_term(name) -> Callable:
    from pcjax.energies import get_energy

    fn = get_energy(name)
    if fn is get_energy("gaussian"):
        return lambda mu, z: 0.5 * (z - mu).square().flatten(1).sum(1)
    if fn is get_energy("cross_entropy"):
        return lambda mu, z: -(z * F.log_softmax(mu, dim=-1)).flatten(1).sum(1)
    raise NotImplementedError(f"energy {name!r} has no torch counterpart here")


if torch is not None:

    class TorchNet(nn.Module):
        """A pcjax ``Network`` (forward energy only) as torch modules."""

        def __init__(self, blocks, skips, skip_edges, node_shapes, hidden="gaussian", output="gaussian"):
            super().__init__()
            self.blocks = nn.ModuleList(blocks)
            self.skips = nn.ModuleList(skips)
            self.skip_edges = tuple(skip_edges)
            self.node_shapes = tuple(node_shapes)
            self.hidden_energy, self.output_energy = _energy_term(hidden), _energy_term(output)
            self.ce_output = _is_ce(output)

        @classmethod
        def from_pcjax(cls, net, hidden="gaussian", output="gaussian") -> "TorchNet":
            if net.backward_nodes:
                raise NotImplementedError("the torch reference has no top-down predictors")
            blocks = [convert_block(b) for b in net.blocks]
            skips = [convert_block(s) for s in net.skips]
            return cls(blocks, skips, net.skip_edges, net.node_shapes, hidden, output)

        @property
        def num_nodes(self) -> int:
            return len(self.blocks)

        def predict(self, values, l: int):
            """mu_l from node values (z_0 = x, z_1, ...)."""
            mu = self.blocks[l - 1](values[l - 1])
            for (s, t), proj in zip(self.skip_edges, self.skips):
                if t == l:
                    mu = mu + proj(values[s])
            return mu

        def feedforward(self, x) -> list:
            values = [x]
            for l in range(1, self.num_nodes + 1):
                values.append(self.predict(values, l))
            return values[1:]

        def forward(self, x):
            return self.feedforward(x)[-1]

        def energy(self, x, latents) -> "torch.Tensor":
            """Per-sample energy sum_l phi(mu_l, z_l), shape (B,)."""
            values = [x] + list(latents)
            L = self.num_nodes
            total = 0.0
            for l in range(1, L + 1):
                phi = self.output_energy if l == L else self.hidden_energy
                total = total + phi(self.predict(values, l), values[l])
            return total

        def to_pcjax(self, net):
            """A copy of the pcjax network ``net`` carrying this module's (trained) weights."""
            import equinox as eqx
            import jax.numpy as jnp

            def assign(block, tmod):
                for name, value in tmod.to_pcjax().items():
                    if isinstance(value, dict):
                        block = eqx.tree_at(lambda b, n=name: getattr(b, n), block,
                                            assign(getattr(block, name), getattr(tmod, name)))
                    else:
                        block = eqx.tree_at(lambda b, n=name: getattr(b, n), block, jnp.asarray(value))
                return block

            blocks = tuple(assign(b, t) for b, t in zip(net.blocks, self.blocks))
            skips = tuple(assign(s, t) for s, t in zip(net.skips, self.skips))
            net = eqx.tree_at(lambda n: n.blocks, net, blocks)
            return eqx.tree_at(lambda n: n.skips, net, skips) if skips else net


# -------------------------------------------------------------------------------------- optimisers
def _adamw(params, weight_optim) -> "torch.optim.Optimizer":
    if weight_optim.name not in ("adamw", "adam"):
        raise NotImplementedError("the torch reference implements the adamw / adam weight optimisers")
    if weight_optim.grad_clip:
        raise NotImplementedError("grad_clip is not implemented in the torch reference")
    wd = weight_optim.weight_decay if weight_optim.name == "adamw" else 0.0
    return torch.optim.AdamW(params, lr=weight_optim.lr, betas=(weight_optim.b1, weight_optim.b2), eps=1e-8,
                             weight_decay=wd)


def schedule_values(weight_optim, total_steps: int) -> np.ndarray:
    """The learning rate of every weight update (the optax schedule pcjax uses, evaluated once)."""
    lr = weight_optim.learning_rate(total_steps)
    if callable(lr):
        import jax.numpy as jnp

        return np.asarray(lr(jnp.arange(max(int(total_steps), 1))), dtype=np.float64)
    return np.full((max(int(total_steps), 1),), float(lr))


class _Trainer:
    def __init__(self, tnet: "TorchNet", weight_optim, total_steps: int):
        _require()
        self.net = tnet
        self.params = list(tnet.parameters())
        self.optim = _adamw(self.params, weight_optim)
        self.lrs = schedule_values(weight_optim, total_steps)
        self.step_count = 0

    def _set_lr(self):
        lr = float(self.lrs[min(self.step_count, len(self.lrs) - 1)])
        for group in self.optim.param_groups:
            group["lr"] = lr
        self.step_count += 1

    def _grad(self, flag: bool):
        for p in self.params:
            p.requires_grad_(flag)


class TorchPC(_Trainer):
    """PC-SE / PC-CE training step in PyTorch eager mode (see module doc)."""

    def __init__(self, tnet: "TorchNet", *, T: int, latent_lr: float, latent_momentum: float = 0.0,
                 nesterov: bool = False, weight_optim, total_steps: int = 1000, beta: float = 1.0,
                 latent_grad: str = "sample"):
        super().__init__(tnet, weight_optim, total_steps)
        self.T, self.lr, self.momentum, self.nesterov = int(T), float(latent_lr), float(latent_momentum), nesterov
        self.beta, self.latent_grad = float(beta), latent_grad

    def relax(self, x, y):
        """Feed-forward init, clamp the output, T latent steps; returns (free latents, target)."""
        self._grad(False)
        with torch.no_grad():
            mus = self.net.feedforward(x)
            mu = mus[-1]
            if self.net.ce_output:  # pcjax.network.nudged_target
                mu = torch.softmax(mu, dim=-1)
            target = y.to(mu.dtype) if self.beta == 1.0 else mu - self.beta * (mu - y)
        z = [m.detach().clone().requires_grad_(True) for m in mus[:-1]]
        if self.T > 0 and z:
            opt = torch.optim.SGD(z, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov)
            for _ in range(self.T):
                per_sample = self.net.energy(x, z + [target])
                total = per_sample.sum() if self.latent_grad == "sample" else per_sample.mean()
                grads = torch.autograd.grad(total, z)
                for zi, g in zip(z, grads):
                    zi.grad = g
                opt.step()
        return [zi.detach() for zi in z], target

    def weight_step(self, x, latents, target):
        """One AdamW step from (1/beta) d/dtheta of the batch-mean energy; returns the energy."""
        self._grad(True)
        self.optim.zero_grad(set_to_none=True)
        energy = self.net.energy(x, list(latents) + [target]).mean()
        (energy / self.beta if self.beta != 1.0 else energy).backward()
        self._set_lr()
        self.optim.step()
        return energy.detach()

    def train_step(self, x, y):
        """One full PC step on a batch (x NCHW / flat, y one-hot); returns the batch energy."""
        latents, target = self.relax(x, y)
        return self.weight_step(x, latents, target)


class TorchBP(_Trainer):
    """Backprop on the same network: loss = batch mean of 0.5 ||mu_L - y||^2 (or cross-entropy)."""

    def __init__(self, tnet: "TorchNet", *, weight_optim, total_steps: int = 1000, loss: str = "gaussian"):
        super().__init__(tnet, weight_optim, total_steps)
        self.loss = _energy_term(loss)

    def train_step(self, x, y):
        self.optim.zero_grad(set_to_none=True)
        loss = self.loss(self.net(x), y).mean()
        loss.backward()
        self._set_lr()
        self.optim.step()
        return loss.detach()


def num_threads() -> int | None:
    """torch's intra-op thread count (None without torch)."""
    return torch.get_num_threads() if torch is not None else None


__all__ = ["available", "TorchNet", "TorchPC", "TorchBP", "convert_block", "to_torch_node", "from_torch_node",
           "hwc_perm", "schedule_values", "num_threads"]
