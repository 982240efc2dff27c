"""Robust prediction-error energies: the Huber and Cauchy terms, with their scale as a parameter.

Huber: phi(e) = sum_i h(e_i) with h(e) = e^2 / 2 for |e| <= delta and delta (|e| - delta / 2)
beyond, so a large prediction error pulls on the latents with a bounded force delta instead of e.
Cauchy: phi(e) = sum_i (c^2 / 2) log(1 + (e_i / c)^2), whose force e / (1 + (e / c)^2) even
vanishes for outliers. Both equal the Gaussian energy e^2 / 2 for errors well below their scale,
so the scale decides where they act: the defaults (``delta = c = 0.05``) are the size of a typical
per-feature error at the hidden nodes of the digits MLP. A keyword parameter of an energy term is
set from the configuration: ``energy.params`` (``+energy.params.delta=1.0`` on the command line,
``EnergySpec(hidden="huber", params={"delta": 1.0})`` in Python).

Use them from the command line by loading this file as a plugin:

    python experiments/train.py plugins=[examples/huber_energy.py] energy.hidden=huber
"""

import jax.numpy as jnp

from pcjax.energies import register_energy


def per_sample(x):
    """Sum over every axis but the batch axis: one energy per sample."""
    return jnp.sum(x, axis=tuple(range(1, x.ndim)))


@register_energy("huber")
def huber(pred, value, delta=0.05):
    """Huber energy with threshold ``delta``, summed over the features of each sample."""
    e = jnp.abs(value - pred)
    return per_sample(jnp.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta)))


@register_energy("cauchy")
def cauchy(pred, value, scale=0.05):
    """Cauchy (Lorentzian) energy with scale ``scale``, summed over the features of each sample."""
    return per_sample(0.5 * scale**2 * jnp.log1p(((value - pred) / scale) ** 2))
