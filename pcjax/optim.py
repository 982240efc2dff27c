"""Weight optimisers (optax), shared by PC and backprop so both train with the same rule."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from .errors import ConfigError


@dataclass(frozen=True)
class WeightOptim:
    """Weight optimiser and schedule.

    ``schedule="warmup_cosine"``: lr(t) rises linearly from ``lr`` to ``peak_factor * lr`` over the
    first ``warmup`` fraction of all steps, then follows a cosine decay to ``end_factor * lr``
    (optax.warmup_cosine_decay_schedule), as in the PCX benchmark. ``"constant"``: lr(t) = lr.

    ``name``: ``adamw``, ``adam``, ``sgd`` (with ``momentum``), or the layer-wise optax optimisers
    ``lamb`` (Adam direction d, update -lr ||w|| d / ||d|| per parameter array) and ``lars`` (the same
    on the momentum direction). ``layerwise`` rescales any optimiser's direction d_l per parameter
    array (one weight matrix per block in the muPC models) before the learning rate applies
    (layer-adaptive rates on the weight side):

    * ``none``: u_l = -lr d_l (the optimiser as it is);
    * ``trust_ratio``: u_l = -lr ||w_l|| d_l / ||d_l|| (``optax.scale_by_trust_ratio``: every layer
      moves by the same fraction lr of its weights, whatever its gradient's scale);
    * ``normalized``: u_l = -lr sqrt(n_l) d_l / ||d_l|| (every layer's update has RMS lr, n_l its size).
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "warmup_cosine"
    warmup: float = 0.1
    peak_factor: float = 1.1
    end_factor: float = 0.1
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float | None = None
    layerwise: str = "none"

    def learning_rate(self, total_steps: int) -> optax.Schedule | float:
        """The learning-rate schedule over ``total_steps`` weight updates."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "warmup_cosine":
            total = max(int(total_steps), 2)
            return optax.warmup_cosine_decay_schedule(
                init_value=self.lr,
                peak_value=self.peak_factor * self.lr,
                warmup_steps=max(1, int(self.warmup * total)),
                decay_steps=total,
                end_value=self.end_factor * self.lr,
            )
        raise ConfigError(f"unknown optim.schedule {self.schedule!r}; valid choices: constant, warmup_cosine")

    def make(self, total_steps: int) -> optax.GradientTransformation:
        """The optax transformation for ``total_steps`` weight updates."""
        lr = self.learning_rate(total_steps)
        if self.layerwise != "none":
            opt = optax.chain(self.direction(), layerwise_scaling(self.layerwise), optax.scale_by_learning_rate(lr))
        elif self.name == "lamb":
            opt = optax.lamb(lr, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay)
        elif self.name == "lars":
            opt = optax.lars(lr, weight_decay=self.weight_decay, momentum=self.momentum)
        elif self.name == "adamw":
            opt = optax.adamw(lr, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay)
        elif self.name == "adam":
            opt = optax.adam(lr, b1=self.b1, b2=self.b2)
        elif self.name == "sgd":
            opt = optax.chain(optax.add_decayed_weights(self.weight_decay), optax.sgd(lr, momentum=self.momentum or None))
        else:
            raise ConfigError(f"unknown optim.name {self.name!r}; valid choices: {', '.join(NAMES)}")
        if self.grad_clip:
            opt = optax.chain(optax.clip_by_global_norm(self.grad_clip), opt)
        return opt

    def direction(self) -> optax.GradientTransformation:
        """The optimiser's update direction before the learning rate (for ``layerwise``)."""
        if self.name in ("adamw", "lamb"):
            return optax.chain(optax.scale_by_adam(b1=self.b1, b2=self.b2), optax.add_decayed_weights(self.weight_decay))
        if self.name == "adam":
            return optax.scale_by_adam(b1=self.b1, b2=self.b2)
        if self.name in ("sgd", "lars"):
            return optax.chain(optax.add_decayed_weights(self.weight_decay),
                               optax.trace(decay=self.momentum) if self.momentum else optax.identity())
        raise ConfigError(f"unknown optim.name {self.name!r}; valid choices: {', '.join(NAMES)}")

    def __post_init__(self):
        if self.name not in NAMES:
            raise ConfigError(f"unknown optim.name {self.name!r}; valid choices: {', '.join(NAMES)}")
        if self.layerwise not in LAYERWISE:
            raise ConfigError(f"unknown optim.layerwise {self.layerwise!r}; valid choices: {', '.join(LAYERWISE)}")
        if self.layerwise != "none" and self.name in ("lamb", "lars"):
            raise ConfigError(f"optim.name={self.name} already scales each layer by its trust ratio: "
                              "use optim.layerwise=none with it (or layerwise with adam/adamw/sgd)")


NAMES = ("adamw", "adam", "sgd", "lamb", "lars")
LAYERWISE = ("none", "trust_ratio", "normalized")


def scale_by_layer_rms() -> optax.GradientTransformation:
    """u_l <- sqrt(n_l) u_l / ||u_l|| per parameter array (0 stays 0): every array's update has RMS 1."""

    def update(updates, state, params=None):
        def one(u):
            norm = jnp.linalg.norm(u.ravel())
            return jnp.where(norm > 0, u * (jnp.sqrt(u.size).astype(u.dtype) / jnp.where(norm > 0, norm, 1)), u)

        return jax.tree_util.tree_map(one, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def layerwise_scaling(rule: str) -> optax.GradientTransformation:
    """The per-array rescaling ``rule`` of ``WeightOptim.layerwise``."""
    if rule == "trust_ratio":
        return optax.scale_by_trust_ratio()
    if rule == "normalized":
        return scale_by_layer_rms()
    raise ConfigError(f"unknown optim.layerwise {rule!r}; valid choices: {', '.join(LAYERWISE)}")
