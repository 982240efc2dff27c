"""A layer-adaptive learning-rate (LALR) rule driven by the per-layer energy.

At every inference step the rule receives the per-node error norms ||e_l|| = sqrt(mean_b
||z_l - mu_l||^2) and turns them into the Gaussian per-layer energies E_l = ||e_l||^2 / 2.
The latent z_l is pulled by its own error and by the error of the node above it, which z_l
predicts; right after the output is clamped only the top carries energy, and the error then
travels down one layer per step. The rule therefore lets each node step in proportion to the
share of the energy held by the node above it:

    rho_l = clip(((E_{l+1} + eps) / (mean_k E_k + eps)) ** power, 1 / max_scale, max_scale)

(the output node, which is clamped, uses its own energy). The multipliers carry no gradient;
``power = 0`` recovers plain PC.

    python experiments/train.py plugins=[examples/energy_lalr.py] lalr=constant lalr.rule=energy_share
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from pcjax.lalr import CheckedRule, LayerScales, lalr_param, register_lalr


@dataclass(frozen=True)
class EnergyShare(CheckedRule):
    """rho_l = clip(((E_{l+1} + eps) / (mean E + eps))^power, 1/max_scale, max_scale), E = ||e||^2 / 2."""

    power: float = lalr_param(0.5, 0.0)  # valid range [0, inf), checked when the rule is built
    eps: float = lalr_param(1e-4, 0.0)
    max_scale: float = lalr_param(4.0, 1.0, why="rho is clipped to [1/max_scale, max_scale]")

    def scales(self, t, error_norm, T):
        """Step multipliers from the current per-layer energies; precisions stay 1."""
        energy = 0.5 * jnp.square(jax.lax.stop_gradient(error_norm))
        above = jnp.concatenate([energy[1:], energy[-1:]])  # E_{l+1}; the output node keeps E_L
        share = (above + self.eps) / (jnp.mean(energy) + self.eps)
        rho = jnp.clip(share**self.power, 1.0 / self.max_scale, self.max_scale)
        return LayerScales(rho, jnp.ones_like(error_norm))


register_lalr("energy_share", EnergyShare)
