"""Error-optimised predictive coding (ePC; Goemaere et al. 2025): ``PC`` with parameterisation ``Errors``.

The free variables are the prediction errors e_1..e_{L-1}, initialised at 0; the states follow by a
forward sweep z_l = mu_l(z_{<l}) + e_l (skips included), so the output z_L = mu_L(z_{L-1}) is a
function of every error and one gradient step reaches every layer. The energy is

    E(e) = sum_{l<L} alpha_l phi_hidden(mu_l, z_l) + beta * phi_out(mu_L, y) (+ lam top-down terms)

(0.5 ||e_l||^2 for the Gaussian hidden term). T optimiser steps on e lower it (each node's step
scaled by the LALR rule); the weights then step along the local PC gradient at the relaxed states,
(1/beta) dE/dtheta with the states held fixed. Same equilibrium as state PC (an affine change of
variables); as beta -> 0 the update tends to the backprop gradient.

``target`` says how beta places the label. ``"weighted"`` (the default; target part ``Weighted``):
the output term is beta * phi_out(mu_L, y), toward the label itself. ``"nudged"`` (target part
``Clamp``): the output term has weight 1 and its target is the nudged output
y_t = mu_L(e = 0) + beta (y - mu_L(e = 0)) (``nudged_target``, as state PC's ``Clamp`` places it),
i.e. E(e) = sum_l 0.5 ||e_l||^2 + phi_out(mu_L, y_t), and the weights step along (1/beta) dE/dtheta
at (z, y_t): the maths of the plain-JAX calibration script (``../shared/tools/calibrate_deep_pc.py``).
Both give the same first relaxation step and are identical at beta = 1; they differ in the output
term's curvature (beta vs 1) and in its weight gradient (mu_L - y vs (mu_L - y_t) / beta).

``EPC`` is a constructor: the step is ``PC``'s, so ePC takes the other parts too
(``PC(PCConfig(parameterisation=Errors(), update=Contrastive(), ...))``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..inference import Inference
from ..network_energy import EnergySpec
from ..runtime import Runtime
from .parameterisation import Errors, sweep
from .pc import PC, PCConfig
from .targets import Clamp, Weighted

TARGETS = ("weighted", "nudged")

__all__ = ["EPC", "TARGETS", "epc_config", "sweep"]


def epc_config(inference: Inference, energy: EnergySpec, *, beta: float = 1.0, target: str = "weighted",
               reuse_sweep: bool = False, **parts) -> PCConfig:
    """The ``PCConfig`` of ePC: parameterisation ``Errors(reuse_sweep)``, target ``Weighted`` (``"weighted"``)
    or ``Clamp`` (``"nudged"``), the inference part's settings; ``parts`` (e.g. ``update=``) replace fields."""
    if not beta > 0:
        raise ConfigError(f"algorithm.beta must be > 0 for ePC (the output term's weight), got {beta}")
    if target not in TARGETS:
        raise ConfigError(f"ePC target must be one of {', '.join(TARGETS)}; got {target!r}")
    return PCConfig(T=inference.T, latent=inference.optim, energy=energy, lalr=inference.lalr, beta=beta,
                    latent_grad=inference.latent_grad, tol=inference.tol, tol_on=inference.tol_on,
                    min_steps=inference.min_steps, target=Weighted() if target == "weighted" else Clamp(),
                    parameterisation=Errors(reuse_sweep=bool(reuse_sweep)), **parts)


class EPC(PC):
    """ePC: inference on the prediction errors, local PC weight update at the swept states
    (``PC`` with parameterisation ``Errors``). ``reuse_sweep``: the energy reuses the sweep's
    predictions (``Errors``; faster, equal up to rounding). ``parts`` replace other ``PCConfig``
    fields: ``update`` (default ``Equilibrium``), ``lalr_weights``, ``eval_steps`` (refused: ePC
    evaluates mu_L)."""

    def __init__(self, inference: Inference, energy: EnergySpec, weight_optim, total_steps: int, *,
                 beta: float = 1.0, target: str = "weighted", runtime: Runtime | None = None, name: str = "epc",
                 reuse_sweep: bool = False, **parts: Any):
        super().__init__(epc_config(inference, energy, beta=beta, target=target, reuse_sweep=reuse_sweep, **parts),
                         weight_optim, total_steps, runtime=runtime, name=name, inference=inference)
        self.target = target

    @property
    def energy(self) -> EnergySpec:
        return self.config.energy

    @property
    def beta(self) -> float:
        return self.config.beta
