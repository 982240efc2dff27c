"""Several processes (hosts) training one model: ``jax.distributed`` and who writes what.

``trainer.distributed`` chooses how a run joins a multi-process job:

* ``off`` (default): one process; nothing is initialised.
* ``auto``: :func:`jax.distributed.initialize` when the run was launched as one task of several
  (SLURM with ``SLURM_NTASKS`` > 1, Open MPI with ``OMPI_COMM_WORLD_SIZE`` > 1, or an explicit
  coordinator below); a lone process runs as with ``off``.
* ``on``: always initialise (JAX finds the cluster itself, or uses the explicit settings).

Explicit settings (a cluster JAX does not detect, or processes started by hand):
``trainer.coordinator`` (``host:port`` of process 0), ``trainer.num_processes`` and
``trainer.process_id``, or the environment variables ``PCJAX_COORDINATOR``, ``PCJAX_NUM_PROCESSES``
and ``PCJAX_PROCESS_ID``. Then ``trainer.devices=all`` spans every device of every process: the
batch is split over all of them and the weight gradient's batch mean is one all-reduce across hosts.

Every process computes the same replicated parameters; only process 0 writes the run record,
checkpoints and trackers (:func:`is_writer`). All processes read the checkpoint when resuming, so
the run directory must be on a file system they share.
"""

from __future__ import annotations

import os

import jax

from .errors import ConfigError

MODES = ("off", "auto", "on")
_ENV = {"coordinator": "PCJAX_COORDINATOR", "num_processes": "PCJAX_NUM_PROCESSES", "process_id": "PCJAX_PROCESS_ID"}
_state = {"initialised": False}


def _launched_as_task() -> bool:
    """True when the environment says this process is one task of several."""
    for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def settings(coordinator=None, num_processes=None, process_id=None) -> dict:
    """The explicit coordinator settings, each from its argument or else its environment variable."""
    out = {}
    for key, value in (("coordinator", coordinator), ("num_processes", num_processes), ("process_id", process_id)):
        value = os.environ.get(_ENV[key]) if value is None else value
        if value is not None and key != "coordinator":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"trainer.{key} (or {_ENV[key]}) must be an integer, got {value!r}") from None
        out[key] = value
    given = [k for k, v in out.items() if v is not None]
    if given and len(given) != 3:
        missing = [f"trainer.{k} (or {_ENV[k]})" for k, v in out.items() if v is None]
        raise ConfigError(f"a multi-process run needs the coordinator, the process count and this process's id; "
                          f"missing {', '.join(missing)}")
    if given and not 0 <= out["process_id"] < out["num_processes"]:
        raise ConfigError(f"trainer.process_id={out['process_id']} must lie in [0, {out['num_processes']})")
    return out


def initialize(mode: str = "off", *, coordinator=None, num_processes=None, process_id=None) -> bool:
    """Join the multi-process job ``mode`` asks for (see the module docstring); True when this process
    is part of one. Call before any JAX computation; calling it again is a no-op."""
    if mode not in MODES:
        raise ConfigError(f"trainer.distributed must be one of {MODES}, got {mode!r}")
    if _state["initialised"]:
        return True
    explicit = settings(coordinator, num_processes, process_id)
    if mode == "off" or (mode == "auto" and explicit["coordinator"] is None and not _launched_as_task()):
        return False
    kwargs = {}
    if explicit["coordinator"] is not None:
        kwargs = dict(coordinator_address=explicit["coordinator"], num_processes=explicit["num_processes"],
                      process_id=explicit["process_id"])
    try:
        jax.distributed.initialize(**kwargs)
    except ValueError as err:  # JAX detected no cluster and no coordinator was given
        if kwargs or "coordinator" not in str(err):
            raise
        raise ConfigError(_no_coordinator(mode)) from err
    except RuntimeError as err:
        raise ConfigError(
            f"jax.distributed.initialize({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {err}. "
            "Initialise before any JAX computation, check that every process names the same coordinator, and "
            "that process 0 is reachable there") from err
    _state["initialised"] = True
    return True


def _no_coordinator(mode: str) -> str:
    why = [f"{v}={os.environ[v]}" for v in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
           if os.environ.get(v, "1") not in ("", "1", "0")]
    task = f" and {', '.join(why)} (this process is one task of several)" if why else ""
    reason = f"trainer.distributed={mode}{task} {'ask' if why else 'asks'} this run to join a multi-process job"
    return (f"{reason}, but no coordinator is known: JAX detected no cluster it can join (none of the environment "
            "of an srun or mpirun task) and trainer.coordinator is unset. Start every process with srun or mpirun "
            "inside the job's allocation, or name the job yourself with trainer.coordinator=HOST:PORT "
            "trainer.num_processes=N trainer.process_id=I (or PCJAX_COORDINATOR, PCJAX_NUM_PROCESSES, "
            "PCJAX_PROCESS_ID); for a single process use trainer.distributed=off"
            + (f" or unset {', '.join(w.split('=')[0] for w in why)}" if why else "")
            + ". The run has not started: nothing was trained or recorded.")


def is_writer() -> bool:
    """True in the process that writes records, checkpoints and trackers (process 0)."""
    return jax.process_index() == 0


def same_on_every_process(text: str, *, limit: int = 4096) -> str:
    """``text`` as process 0 has it, in every process (e.g. a run directory named by start time and pid);
    unchanged in a single-process run."""
    if jax.process_count() == 1:
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    data = text.encode()
    if len(data) > limit:
        raise ConfigError(f"cannot share a value of {len(data)} bytes between processes (at most {limit})")
    buf = np.zeros(limit + 4, np.uint8)
    buf[:4] = np.frombuffer(np.uint32(len(data)).tobytes(), np.uint8)
    buf[4:4 + len(data)] = np.frombuffer(data, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    size = int(np.frombuffer(out[:4].tobytes(), np.uint32)[0])
    return out[4:4 + size].tobytes().decode()
