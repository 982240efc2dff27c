"""Load user extension modules (plugins) before a run is built.

A plugin is an ordinary Python module whose import registers new components with pcjax's
registries: energy terms (``register_energy``), model builders (``register_model``), LALR rules
(``register_lalr``) and algorithms (``register_algorithm``). The command line imports them through
the ``plugins`` config field::

    python experiments/train.py plugins=[examples/huber_energy.py] energy.hidden=huber
    python experiments/train.py plugins=[my_package.my_energies] energy.hidden=my_term

The command line loads them before Hydra composes the configuration (``plugins_from_overrides``),
so that a registered algorithm is also a config-group choice: ``algorithm=my_rule``.

Each entry is either a dotted module name (imported with ``importlib.import_module``; the current
working directory is put on ``sys.path`` first) or the path of a ``.py`` file. A file that lies
inside a directory on ``sys.path`` is imported under its dotted name (``examples/huber_energy.py``
is the module ``examples.huber_energy``), so naming a plugin by path or by module gives the same
module and its registrations run once. Loading is idempotent: a module already imported is not
executed again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .errors import ConfigError

__all__ = ["load_plugin", "load_plugins", "plugins_from_overrides"]


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def _dotted_name(path: Path) -> str | None:
    """The module name of ``path`` relative to a ``sys.path`` entry, if it has one."""
    for entry in sys.path:
        try:
            root = Path(entry or os.getcwd()).resolve()
            rel = path.relative_to(root)
        except (ValueError, OSError):
            continue
        parts = rel.with_suffix("").parts
        if parts and all(p.isidentifier() for p in parts):
            return ".".join(parts)
    return None


def _import_file(path: Path) -> ModuleType:
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return module
    name = _dotted_name(path)
    if name is not None:
        try:
            module = importlib.import_module(name)
            if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path:
                return module
        except ImportError:
            pass
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"pcjax_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugin(entry: str) -> ModuleType:
    """Import one plugin: a dotted module name or the path of a ``.py`` file; returns the module.

    Raises ``ConfigError`` when the module or file does not exist; errors raised while the plugin
    itself executes propagate unchanged.
    """
    entry = str(entry).strip()
    if not entry:
        raise ConfigError("plugins: empty entry")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    if _is_path(entry):
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"plugins: file {entry!r} not found (looked at {path})")
        return _import_file(path)
    try:
        return importlib.import_module(entry)
    except ModuleNotFoundError as err:
        if err.name and entry.startswith(err.name):
            raise ConfigError(
                f"plugins: module {entry!r} not found; give a dotted module name importable from "
                f"the working directory ({cwd}) or the path of a .py file"
            ) from None
        raise


def load_plugins(entries: Iterable[str] | str | None) -> list[ModuleType]:
    """Import every plugin in ``entries`` (in order) so that its registrations take effect.

    ``None`` or an empty list does nothing; a single string is one entry.
    """
    if not entries:
        return []
    if isinstance(entries, str):
        entries = [entries]
    return [load_plugin(e) for e in entries]


def plugins_from_overrides(overrides: Iterable[str]) -> list[str]:
    """The plugin entries named by a ``plugins=[a,b]`` (or ``+plugins=``, ``plugins=a``) command-line
    override, in order; [] when there is none."""
    entries: list[str] = []
    for arg in overrides:
        key, sep, value = str(arg).partition("=")
        if not sep or key.lstrip("+~") != "plugins":
            continue
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        entries += [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return entries
