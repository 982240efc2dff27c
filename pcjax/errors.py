"""Exceptions raised by pcjax, each carrying the problem and the fix in its message."""


class PCJaxError(RuntimeError):
    """Base class of pcjax errors."""


class ShapeError(PCJaxError, ValueError):
    """Arrays whose shapes do not fit the network (names the block and both shapes), or an energy term
    whose values are not floating-point (names the node, the term and the dtype)."""


class DivergenceError(PCJaxError, FloatingPointError):
    """The energy became non-finite during training (names the layer and inference step), or its
    magnitude passed ``trainer.divergence_threshold`` (names the threshold)."""


class ConfigError(PCJaxError, ValueError):
    """An invalid configuration value (names the field and the valid choices or range)."""


class RunLockedError(PCJaxError):
    """Another live process holds the run directory's lock (names the directory and the holder's pid)."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (a ``KeyboardInterrupt``) after its record was marked ``interrupted``.

    ``run_dir`` is the run's directory; ``epochs_done`` the number of epochs its last checkpoint holds
    (0 when none was written yet); ``within_epoch`` ``(epoch, chunks)`` when a within-epoch checkpoint
    holds ``chunks`` chunks of the (1-based) ``epoch`` after that, else None."""

    def __init__(self, run_dir: str, epochs_done: int = 0, within_epoch: tuple[int, int] | None = None) -> None:
        extra = "" if within_epoch is None else f", and {within_epoch[1]} chunks of epoch {within_epoch[0]}"
        super().__init__(f"interrupted: {run_dir} ({epochs_done} epochs checkpointed{extra})")
        self.run_dir, self.epochs_done, self.within_epoch = run_dir, epochs_done, within_epoch
