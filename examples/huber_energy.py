"""Robust prediction-error energies: the Huber and Cauchy terms.

Huber: phi(e) = sum_i h(e_i) with h(e) = e^2 / 2 for |e| <= delta and delta (|e| - delta / 2)
beyond, so a large prediction error pulls on the latents with a bounded force delta instead of e.
Cauchy: phi(e) = sum_i (c^2 / 2) log(1 + (e_i / c)^2), whose force e / (1 + (e / c)^2) even
vanishes for outliers. Both equal the Gaussian energy e^2 / 2 for errors well below their scale,
so the scale decides where they act: the registered ``huber`` and ``cauchy`` use 0.05, the size of
a typical per-feature error at the hidden nodes of the digits MLP. Register other scales under
other names, e.g. ``register_energy("huber1", make_huber(1.0))`` for an output node.

Use them from the command line by loading this file as a plugin:

    python experiments/train.py plugins=[examples/huber_energy.py] energy.hidden=huber
"""

import jax.numpy as jnp

from pcjax.energies import register_energy


def _per_sample(x):
    return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def make_huber(delta):
    """Huber energy with threshold ``delta``, summed over the features of each sample."""

    def huber(pred, value):
        e = jnp.abs(value - pred)
        return _per_sample(jnp.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta)))

    return huber


def make_cauchy(c):
    """Cauchy (Lorentzian) energy with scale ``c``, summed over the features of each sample."""

    def cauchy(pred, value):
        return _per_sample(0.5 * c**2 * jnp.log1p(((value - pred) / c) ** 2))

    return cauchy


huber = register_energy("huber", make_huber(0.05))
cauchy = register_energy("cauchy", make_cauchy(0.05))
