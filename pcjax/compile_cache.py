"""JAX's persistent compilation cache, on by default, so a run does not recompile what an earlier run compiled.

``trainer.compile_cache``: ``auto`` (default) uses ``$PCJAX_COMPILE_CACHE`` if set, else
``$XDG_CACHE_HOME/pcjax/jax-compile`` (``~/.cache/pcjax/jax-compile``); a path uses that folder;
``null`` (or ``false``/``off``) leaves the cache off. Every compiled program is cached, however
quick its compilation (minimum compile time 0). Sweep jobs running at once can share one folder: JAX
(0.10) writes an entry in place, not atomically, so a job may read one half-written, but entries are
checksummed (zlib), and JAX turns a damaged read into a warning and a recompile. The cache never changes
what is computed: a hit loads the program XLA compiled for the same computation and backend.

``cache_counts()`` counts the cache's hits and misses in this process (JAX's monitoring events); a run
records them at the end of its start-up (``summary.compile_cache_hits`` / ``compile_cache_misses``), so
a warm start shows as hits and no misses.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import jax

OFF = (None, False, "null", "none", "false", "off", "")
_EVENTS = {"/jax/compilation_cache/cache_hits": "compile_cache_hits",
           "/jax/compilation_cache/cache_misses": "compile_cache_misses"}
_COUNTS = dict.fromkeys(_EVENTS.values(), 0)
_listening = False


def _count(event: str, **_: Any) -> None:
    if event in _EVENTS:
        _COUNTS[_EVENTS[event]] += 1


def cache_counts() -> dict[str, int]:
    """Persistent-cache hits and misses (programs loaded from / written to the cache) in this process
    since the cache was enabled."""
    return dict(_COUNTS)


def cache_folder(setting: Any = "auto") -> Path | None:
    """The cache folder ``setting`` names (None: off)."""
    if setting in OFF or (isinstance(setting, str) and setting.lower() in OFF):
        return None
    if setting in (True, "auto", "true", "on"):
        if os.environ.get("PCJAX_COMPILE_CACHE"):
            return Path(os.environ["PCJAX_COMPILE_CACHE"]).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "pcjax" / "jax-compile"
    return Path(str(setting)).expanduser()


def enable_compile_cache(setting: Any = "auto") -> Path | None:
    """Point JAX's persistent compilation cache at ``cache_folder(setting)``; the folder, or None when
    off or when the folder cannot be created (a warning says why; the run compiles as usual)."""
    folder = cache_folder(setting)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"trainer.compile_cache: cannot create {folder} ({err}); compiling without the persistent "
                      "cache (set trainer.compile_cache to a writable folder, or null to silence this)", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count)
        _listening = True
    return folder
