"""pcjax: energy-based predictive-coding networks in JAX."""

from . import energies, lalr
from .algorithms import PC, Backprop, PCConfig, TrainState
from .blocks import Conv, Dense, Identity, Sequential, Upsample
from .energies import available_energies, get_energy, register_energy
from .errors import ConfigError, DivergenceError, PCJaxError, ShapeError
from .inference import LatentOptim, relax
from .lalr import make_lalr, register_lalr
from .models import build_model, register_model
from .network import EnergySpec, Network, Tied
from .optim import WeightOptim

__version__ = "0.1.0"

__all__ = [
    "PC", "Backprop", "PCConfig", "TrainState", "Conv", "Dense", "Identity", "Sequential", "Upsample",
    "available_energies", "get_energy", "register_energy", "ConfigError", "DivergenceError", "PCJaxError",
    "ShapeError", "LatentOptim", "relax", "make_lalr", "register_lalr", "build_model", "register_model",
    "EnergySpec", "Network", "Tied", "WeightOptim", "energies", "lalr",
]
