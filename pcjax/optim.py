"""Weight optimisers (optax), shared by PC and backprop so both train with the same rule."""

from __future__ import annotations

from dataclasses import dataclass

import optax

from .errors import ConfigError


@dataclass(frozen=True)
class WeightOptim:
    """Weight optimiser and schedule.

    ``schedule="warmup_cosine"``: lr(t) rises linearly from ``lr`` to ``peak_factor * lr`` over the
    first ``warmup`` fraction of all steps, then follows a cosine decay to ``end_factor * lr``
    (optax.warmup_cosine_decay_schedule), as in the PCX benchmark. ``"constant"``: lr(t) = lr.
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
        if self.name == "adamw":
            opt = optax.adamw(lr, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay)
        elif self.name == "adam":
            opt = optax.adam(lr, b1=self.b1, b2=self.b2)
        elif self.name == "sgd":
            opt = optax.chain(optax.add_decayed_weights(self.weight_decay), optax.sgd(lr, momentum=self.momentum or None))
        else:
            raise ConfigError(f"unknown optim.name {self.name!r}; valid choices: adamw, adam, sgd")
        if self.grad_clip:
            opt = optax.chain(optax.clip_by_global_norm(self.grad_clip), opt)
        return opt
