"""pcjax: energy-based predictive-coding networks in JAX."""

from . import energies, lalr, training
from .algorithms import (EPC, PC, PCALM, Algorithm, Backprop, BuildContext, Clamp, Contrastive, Equilibrium, Errors,
                         ForwardUpdate, Incremental, Parameterisation, PCConfig, SoftNudge, States, StatesAndDuals,
                         StepContext, Target, TrainState, UpdateRule, Weighted, algorithm_params, available_algorithms, get_algorithm,
                         register_algorithm)
from .cli import load_config, train
from .blocks import Conv, Dense, Identity, Sequential, Upsample
from .energies import available_energies, get_energy, register_energy
from .errors import ConfigError, DivergenceError, PCJaxError, ShapeError
from .inference import Inference, LatentOptim, relax
from .lalr import make_lalr, register_lalr
from .models import build_model, register_model
from .network import Network, Tied
from .network_energy import EnergySpec, LayerEnergies, network_energy
from .optim import WeightOptim
from .runtime import Runtime, resolve_runtime
from .trained import RunLoadError, TrainedRun, load_run
from .training import TrainerConfig, fit

__version__ = "0.1.0"

__all__ = [
    "EPC", "PC", "PCALM", "Algorithm", "Backprop", "BuildContext", "Clamp", "Contrastive", "Equilibrium", "ForwardUpdate",
    "Incremental", "PCConfig", "SoftNudge", "TrainState", "algorithm_params", "available_algorithms",
    "Errors", "Parameterisation", "States", "StatesAndDuals", "Weighted", "Target", "UpdateRule", "StepContext",
    "get_algorithm", "register_algorithm", "Conv", "Dense", "Identity", "Sequential", "Upsample",
    "available_energies", "get_energy", "register_energy", "ConfigError", "DivergenceError", "PCJaxError",
    "ShapeError", "Inference", "LatentOptim", "relax", "make_lalr", "register_lalr", "build_model", "register_model",
    "Network", "Tied", "EnergySpec", "LayerEnergies", "network_energy", "WeightOptim", "Runtime", "resolve_runtime",
    "energies", "lalr", "load_config", "train", "training", "TrainerConfig", "fit",
    "load_run", "TrainedRun", "RunLoadError",
]
