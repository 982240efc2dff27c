"""Training algorithms on one model definition, assembled from small parts.

``pc`` (state PC: ``PCConfig`` with a target part and an update rule, inference by ``Inference``),
``epc`` (error optimisation), ``pcalm`` (augmented-Lagrangian PC: states and duals) and ``bp`` (backprop) are registered like user algorithms; see
``docs/design.md`` for the data flow and ``docs/extending.md`` for adding one.
"""

from .alm import PCALM, ALMRelaxation, alm_energy, residuals
from .base import Algorithm, TrainState, accuracy, check_batch, trainable
from .bp import Backprop
from .epc import EPC, sweep
from .pc import PC, PCConfig, feedforward
from .registry import (BuildContext, algorithm_params, available_algorithms, build_algorithm, get_algorithm,
                       register_algorithm)
from .targets import Clamp, Problem, SoftNudge, energy_at, nudged_target
from .updates import Contrastive, Equilibrium, ForwardUpdate, Incremental, Step, weight_gradient
from .builtin import pc_config  # registers pc, epc, bp

__all__ = [
    "PCALM", "ALMRelaxation", "alm_energy", "residuals", "Algorithm", "TrainState", "accuracy", "check_batch", "trainable", "Backprop", "EPC", "sweep", "PC", "PCConfig",
    "feedforward", "BuildContext", "algorithm_params", "available_algorithms", "build_algorithm", "get_algorithm",
    "register_algorithm", "Clamp", "Problem", "SoftNudge", "energy_at", "nudged_target", "Contrastive",
    "Equilibrium", "ForwardUpdate", "Incremental", "Step", "weight_gradient", "pc_config",
]
