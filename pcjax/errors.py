"""Exceptions raised by pcjax, each carrying the problem and the fix in its message."""


class PCJaxError(RuntimeError):
    """Base class of pcjax errors."""


class ShapeError(PCJaxError, ValueError):
    """Arrays whose shapes do not fit the network (names the block and both shapes)."""


class DivergenceError(PCJaxError, FloatingPointError):
    """The energy became non-finite during training (names the layer and inference step), or its
    magnitude passed ``trainer.divergence_threshold`` (names the threshold)."""


class ConfigError(PCJaxError, ValueError):
    """An invalid configuration value (names the field and the valid choices or range)."""


class RunLockedError(PCJaxError):
    """Another live process holds the run directory's lock (names the directory and the holder's pid)."""
