"""Training algorithms on one model definition, assembled from small parts.

``pc`` (``PCConfig``: a target part, a parameterisation, an update rule, inference by ``Inference``),
``epc`` (the same step with the prediction errors free), ``pcalm`` (with states and duals free:
augmented-Lagrangian PC) and ``bp`` (backprop) are registered like user algorithms; see
``docs/design.md`` for the data flow and ``docs/extending.md`` for adding one.
"""

from .alm import PCALM, ALMRelaxation, alm_energy, residuals
from .base import Algorithm, TrainState, accuracy, check_batch, trainable
from .bp import Backprop
from .epc import EPC, epc_config, sweep
from .parameterisation import Errors, Parameterisation, Relaxation, States, StatesAndDuals
from .pc import PC, PCConfig, StepContext, feedforward
from .registry import (BuildContext, algorithm_params, available_algorithms, build_algorithm, get_algorithm,
                       register_algorithm)
from .targets import Clamp, Goal, Problem, SoftNudge, Target, Weighted, energy_at, nudged_target
from .updates import (Contrastive, Equilibrium, ForwardUpdate, Incremental, Step, UpdateRule, problem_gradient,
                      relax_problem, weight_gradient)
from .builtin import pc_config  # registers pc, epc, bp

__all__ = [
    "PCALM", "ALMRelaxation", "alm_energy", "residuals", "Algorithm", "TrainState", "accuracy", "check_batch",
    "trainable", "Backprop", "EPC", "epc_config", "sweep", "PC", "PCConfig",
    "Parameterisation", "States", "Errors", "StatesAndDuals", "Relaxation", "Goal", "Weighted", "problem_gradient",
    "relax_problem",
    "feedforward", "BuildContext", "algorithm_params", "available_algorithms", "build_algorithm", "get_algorithm",
    "register_algorithm", "Clamp", "Problem", "SoftNudge", "energy_at", "nudged_target", "Contrastive",
    "Equilibrium", "ForwardUpdate", "Incremental", "Step", "weight_gradient", "pc_config", "Target", "UpdateRule", "StepContext",
]
