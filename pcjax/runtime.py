"""Runtime policy: how a step is computed, never what it computes.

``Runtime`` holds the choices that change speed and memory but not the algorithm's maths (up to
floating-point rounding for ``compute_dtype``): the error front, unrolled inference, the compute
dtype and the epoch-loop mode. ``resolve_runtime`` picks them once from the model and the backend
(``auto``); algorithms receive the resolved policy and apply it when their step is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp

from .errors import ConfigError

LOOPS = ("scan", "step")
_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "f16": "float16",
           "float32": None, "fp32": None, "f32": None}


def resolve_dtype(name: str | None):
    """The compute dtype named by ``name`` (``None``/``float32`` -> None: plain float32)."""
    if name is None:
        return None
    try:
        key = _DTYPES[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown compute_dtype {name!r}; valid choices: bfloat16, float16, float32") from None
    return None if key is None else jnp.dtype(key)


def cast_floats(tree, dtype):
    """Every floating array leaf of ``tree`` cast to ``dtype`` (no-op for ``dtype=None``)."""
    if dtype is None:
        return tree
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


@dataclass(frozen=True)
class Runtime:
    """How steps run.

    ``error_front``: skip the inference work the output's error has not reached yet (exact; used
    where it applies: clamped output, Gaussian hidden energy, no top-down terms). ``unroll``: passed
    to the inference ``lax.scan`` (``True`` unrolls it). ``compute_dtype``: predictions computed in
    that dtype (``bfloat16``) with float32 latents, errors, energies and master weights.
    ``loop``: the epoch loop, ``scan`` (steps inside one compiled scan) or ``step`` (one dispatch per batch).
    ``xla_fusion``: False compiles the training step with XLA's CPU ``fusion`` pass disabled. On a deep
    residual network the pass inlines the chain of cotangent additions of ePC's error gradient,
    dE/de_l = dE/dz_l + dE/dz_{l+1} + ..., into every layer's update, so compile time and step time
    grow with depth squared (ePC, MNIST resmlp, T = 4, 2-core CPU: 128 layers 2.46 s/step and 216 s of
    compilation with it, 0.16 s and 14 s without; ``benchmarks/results/epc_fusion_cpu.md``).
    """

    error_front: bool = False
    unroll: int | bool = 1
    compute_dtype: str | None = None
    loop: str = "scan"
    xla_fusion: bool = True

    def __post_init__(self):
        resolve_dtype(self.compute_dtype)
        if self.loop not in LOOPS:
            raise ConfigError(f"trainer.loop must be one of {LOOPS + ('auto',)}, got {self.loop!r}")
        if not (isinstance(self.unroll, bool) or (isinstance(self.unroll, int) and self.unroll >= 1)):
            raise ConfigError(f"algorithm.unroll must be true, false or an integer >= 1; got {self.unroll!r}")

    @property
    def dtype(self):
        """The compute dtype (None: float32)."""
        return resolve_dtype(self.compute_dtype)


#: From this many nodes on, ePC's step on a CPU compiles without the fusion pass (``Runtime.xla_fusion``):
#: measured 1.1x faster at 32 layers, 1.8x at 64, 15x at 128, and 0.9x at 16.
DEEP_NODES = 32

#: From this many nodes on, a dense network on a CPU runs state PC's error front (``Runtime.error_front``):
#: measured at T = depth (MNIST resmlp, batch 64, 2-core CPU under load) 0.57x the step time at 16
#: layers, 0.55x at 64, with the front's steps compiled in sqrt(depth) chunks (64 layers: 46 s of
#: compilation; one body per step took 690 s); PC-ALM at T = 2 x depth 0.60x at 16 layers, 0.68x at 32,
#: 0.87x at 64; ``benchmarks/results/error_front_cpu.md``.
FRONT_NODES = 16


def conv_on_cpu(model, backend: str | None = None) -> bool:
    """True when ``model`` has convolution blocks and the backend is the CPU: XLA:CPU compiles
    convolution gradients inside compiled loops to a slow generic kernel, so loops over such steps
    are better unrolled (inference) or dispatched from Python (epoch)."""
    from .blocks import Conv

    has_conv = any(isinstance(leaf, Conv) for leaf in jax.tree_util.tree_leaves(
        model, is_leaf=lambda n: isinstance(n, Conv)))
    return has_conv and (backend or jax.default_backend()) == "cpu"


def _choice(name: str, value, default, *, integer: bool = False):
    """``auto``/None -> default; true/false (bools or strings); for ``integer`` also an int >= 1."""
    if value in ("auto", None):
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool) or (integer and isinstance(value, int) and value >= 1):
        return value
    raise ConfigError(f"{name} must be auto, true or false{' or an integer >= 1' if integer else ''}; got {value!r}")


def resolve_runtime(model, *, error_front="auto", unroll="auto", compute_dtype=None, loop="auto",
                    xla_fusion="auto", algorithm: str | None = None, backend: str | None = None) -> Runtime:
    """The runtime policy for ``model`` on ``backend`` (default: JAX's). ``auto`` resolves to: error
    front, unrolled inference and per-step dispatch for convnets on a CPU (whose XLA backend runs
    convolution gradients inside compiled loops several times slower than unrolled or dispatched
    alone), the error front also for dense networks of at least ``FRONT_NODES`` nodes on a CPU; the
    scanned inference and epoch loops everywhere else; XLA's CPU fusion pass off for the
    ``algorithm`` ``epc`` on a CPU with a dense network of at least ``DEEP_NODES`` nodes (see
    ``Runtime.xla_fusion``), on everywhere else (convnets were not measured)."""
    conv_cpu = conv_on_cpu(model, backend)
    cpu = (backend or jax.default_backend()) == "cpu"
    if loop not in LOOPS + ("auto",):
        raise ConfigError(f"trainer.loop must be one of {LOOPS + ('auto',)}, got {loop!r}")
    return Runtime(
        error_front=_choice("algorithm.error_front", error_front,
                            conv_cpu or (cpu and getattr(model, "num_nodes", 0) >= FRONT_NODES)),
        unroll=_choice("algorithm.unroll", unroll, True if conv_cpu else 1, integer=True),
        compute_dtype=compute_dtype,
        loop=("step" if conv_cpu else "scan") if loop == "auto" else loop,
        xla_fusion=_choice("algorithm.xla_fusion", xla_fusion, not (
            cpu and algorithm == "epc" and not conv_cpu and getattr(model, "num_nodes", 0) >= DEEP_NODES)),
    )
