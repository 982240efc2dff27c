"""Shared test configuration: CPU, deterministic, offline."""

import os

os.environ["WANDB_MODE"] = "disabled"  # wandb is a default tracker; the tests that check it turn it on
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import atexit
import shutil
import tempfile

# Runs started by tests (run_experiment turns JAX's persistent compilation cache on) write their compiled
# programs to a folder of this test process, removed at exit, never to the user's cache folder.
_compile_cache = tempfile.mkdtemp(prefix="pcjax-test-jax-compile-")
os.environ["PCJAX_COMPILE_CACHE"] = _compile_cache
atexit.register(shutil.rmtree, _compile_cache, ignore_errors=True)

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _user_module(name, module) -> bool:
    """Modules a test may import and must forget again: plugins and examples, not pcjax or libraries."""
    if name == "__docs__" or name.startswith("pcjax_plugin_"):
        return True
    if name == "pcjax" or name.startswith("pcjax.") or module is None:
        return False
    files = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", []) or [])
    paths = [Path(f).resolve() for f in files if f]
    return bool(paths) and all(p.is_relative_to(ROOT) and not p.is_relative_to(ROOT / ".venv") for p in paths)


@contextlib.contextmanager
def isolated_registries(monkeypatch, *, root_on_path: bool):
    """Run from the repository root; afterwards restore the energy, LALR, model and algorithm registries,
    forget user modules (plugins, examples) imported meanwhile, and restore sys.path."""
    from pcjax import energies, lalr, models
    from pcjax.algorithms import registry

    monkeypatch.chdir(ROOT)
    saved = [(reg, dict(reg)) for reg in (energies._REGISTRY, lalr._RULES, models.MODELS, registry._REGISTRY)]
    modules, path = set(sys.modules), list(sys.path)
    if root_on_path:
        sys.path.insert(0, str(ROOT))
    try:
        yield
    finally:
        for reg, copy in saved:
            reg.clear()
            reg.update(copy)
        for name in set(sys.modules) - modules:
            if _user_module(name, sys.modules[name]):
                del sys.modules[name]
        sys.path[:] = path


import pytest  # noqa: E402


@pytest.fixture
def within_epoch_saves(monkeypatch):
    """``arm(stop)`` makes ``RunStore.save_partial`` write its within-epoch checkpoint, note
    ``(epoch, chunk)`` in the returned list, and then raise ``KeyboardInterrupt`` where
    ``stop(epoch, chunk)`` holds (a process killed right after that save); ``arm()`` only records."""
    from pcjax.training import RunStore

    original = RunStore.save_partial

    def arm(stop=lambda epoch, chunk: False) -> list:
        saved: list = []

        def save(self, state, record, epoch, chunk, metrics, seconds, chunks_total=None):
            original(self, state, record, epoch, chunk, metrics, seconds, chunks_total)
            saved.append((epoch, chunk))
            if stop(epoch, chunk):
                raise KeyboardInterrupt

        monkeypatch.setattr(RunStore, "save_partial", save)
        return saved

    return arm


def tiny_config(epochs: int = 1):
    """A run that takes seconds: digits (256 training images, 100 test), a 1 x 16 MLP, T = 2, batch 64,
    JSONL tracking only, no progress bar."""
    from pcjax.config import Config

    c = Config()
    c.dataset.limit_train, c.dataset.limit_test = 256, 100
    c.model.width, c.model.depth = 16, 1
    c.algorithm.T = 2
    c.trainer.epochs, c.trainer.batch_size, c.trainer.progress = epochs, 64, False
    c.tracking.backends = ["jsonl"]
    return c
