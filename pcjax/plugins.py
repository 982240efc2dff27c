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

__all__ = ["load_plugin", "load_plugins", "plugins_from_overrides", "bracket_plugins"]


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


def _failure(entry: str, path: str | None, err: Exception) -> ConfigError:
    """One paragraph for a plugin that could not be imported: the plugin, the file and line where it
    failed, what went wrong and the fix (nothing has run or been written yet)."""
    import linecache
    import traceback

    where, line = path, None
    if isinstance(err, SyntaxError) and err.filename:
        where, line = err.filename, err.lineno
    else:
        frames = traceback.extract_tb(err.__traceback__)
        target = Path(path).resolve() if path else None
        own = [f for f in frames if target is not None and Path(f.filename).resolve() == target]
        outside = [f for f in frames if "importlib" not in f.filename and "<frozen" not in f.filename]
        frame = (own or outside or frames or [None])[-1]
        if frame is not None:
            where, line = frame.filename, frame.lineno
    location = f"{where}, line {line}" if line else str(where or entry)
    code = (err.text or "").strip() if isinstance(err, SyntaxError) else \
        (linecache.getline(where, line).strip() if where and line else "")
    shown = f" (`{code}`)" if code else ""
    nothing = "Nothing has run and no run directory was written."
    if isinstance(err, SyntaxError):
        return ConfigError(f"plugin {entry!r} has a syntax error at {location}{shown}: {err.msg}. Fix the file "
                           f"(python -m py_compile {where} checks it) and run the command again. {nothing}")
    if isinstance(err, ImportError):
        missing = getattr(err, "name", None)
        fix = (f"install it into the environment that runs pcjax ({sys.executable} -m pip install "
               f"<the package that provides {missing!r}>) or fix the import" if missing else "fix the import")
        return ConfigError(f"plugin {entry!r} failed to import at {location}{shown}: {err}. The plugin needs a "
                           f"module this Python cannot import: {fix}. {nothing}")
    if isinstance(err, ConfigError):  # e.g. a name another component already registered
        return ConfigError(f"plugin {entry!r}, at {location}{shown}: {err} {nothing}")
    return ConfigError(f"plugin {entry!r} raised {type(err).__name__} at {location}{shown} while being imported: "
                       f"{err}. Fix the plugin (run python {where} to see the full traceback). {nothing}")


def load_plugin(entry: str) -> ModuleType:
    """Import one plugin: a dotted module name or the path of a ``.py`` file; returns the module.

    Raises ``ConfigError`` when the module or file does not exist, and when the plugin fails while it
    is imported (a syntax error, a missing dependency, a name already registered, any exception): the
    message names the plugin, the file and line and the fix; the original exception is its cause.
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
        try:
            return _import_file(path)
        except Exception as err:  # noqa: BLE001 - named with the file and line, not a traceback
            raise _failure(entry, str(path), err) from err
    try:
        return importlib.import_module(entry)
    except ModuleNotFoundError as err:
        if err.name and entry.startswith(err.name):
            raise ConfigError(
                f"plugins: module {entry!r} not found; give a dotted module name importable from "
                f"the working directory ({cwd}) or the path of a .py file"
            ) from None
        raise _failure(entry, _origin(entry), err) from err
    except Exception as err:  # noqa: BLE001
        raise _failure(entry, _origin(entry), err) from err


def _origin(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # noqa: BLE001
        return None
    return spec.origin if spec is not None else None


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


def bracket_plugins(overrides: Iterable[str]) -> list[str]:
    """``overrides`` with a ``plugins=a.py`` (or ``plugins=a.py,b``) override written as the list Hydra
    expects, ``plugins=[a.py]``: the config field is a list, and a bare value is one entry."""
    out = []
    for arg in overrides:
        key, sep, value = str(arg).partition("=")
        if sep and key.lstrip("+~") == "plugins" and not key.startswith("~") and value.strip() \
                and not value.strip().startswith("["):
            arg = f"{key}=[{value.strip()}]"
        out.append(arg)
    return out
