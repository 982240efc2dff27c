"""The documentation stays true.

* Every fenced ```python block of README.md and docs/*.md runs, each in a fresh namespace, from the
  repository root, within a time budget. A block preceded by ``<!-- compile-only -->`` is only
  compiled; a block preceded by ``<!-- file: PATH -->`` must also equal that file's contents.
* Every public name has a docstring: everything in ``pcjax.__all__`` and every public function and
  class of the modules that docs/api.md lists; every name docs/api.md lists exists, and every name
  in ``pcjax.__all__`` is listed there.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import signal
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import isolated_registries

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = float(os.environ.get("PCJAX_DOC_SNIPPET_BUDGET", "60"))
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(compile-only|file:\s*(\S+))\s*-->$")


@dataclasses.dataclass
class Snippet:
    doc: str
    line: int
    code: str
    compile_only: bool = False
    file: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_files() -> list[Path]:
    """README.md (when it exists) and docs/*.md."""
    files = [ROOT / "README.md"] if (ROOT / "README.md").is_file() else []
    return files + sorted((ROOT / "docs").glob("*.md"))


def extract_snippets(path: Path) -> list[Snippet]:
    """The fenced python blocks of a markdown file, with the marker comment that precedes each."""
    lines = path.read_text().splitlines()
    rel = str(path.relative_to(ROOT))
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not (lines[j].strip() == "```" and lines[j].startswith(indent)):
            j += 1
        if lang in ("python", "py"):
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.match(lines[k].strip()) if k >= 0 else None
            out.append(Snippet(
                rel, i + 1, "\n".join(body) + "\n",
                compile_only=bool(marker and marker.group(1) == "compile-only"),
                file=marker.group(2) if marker and marker.group(2) else None,
            ))
        i = j + 1
    return out


SNIPPETS = [s for f in doc_files() for s in extract_snippets(f)]


@pytest.fixture
def isolated(monkeypatch):
    """Repository root as working directory and on sys.path (like ``python`` run there); registries,
    imported modules and sys.path are restored afterwards so snippets cannot leak into each other."""
    with isolated_registries(monkeypatch, root_on_path=True):
        yield


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


@pytest.mark.skipif(not SNIPPETS, reason="no python snippets in README.md or docs/*.md")
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, isolated):
    if snippet.file is not None:
        target = ROOT / snippet.file
        assert target.is_file(), f"{snippet.id} shows {snippet.file}, which does not exist"
        assert snippet.code == target.read_text(), f"{snippet.id} differs from {snippet.file}: copy the file into the doc"
    code = compile(snippet.code, snippet.id, "exec")
    if snippet.compile_only:
        return
    module = types.ModuleType("__docs__")  # a real module: dataclasses and equinox look classes up there
    module.__file__ = str(ROOT / snippet.doc)
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 2 * BUDGET_S)
    start = time.perf_counter()
    try:
        exec(code, namespace)
    except _Timeout:
        pytest.fail(f"{snippet.id} ran longer than {2 * BUDGET_S:.0f} s; shorten it or mark it <!-- compile-only -->")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    assert elapsed <= BUDGET_S, f"{snippet.id} took {elapsed:.1f} s (budget {BUDGET_S:.0f} s)"


def test_doc_parser_handles_markers(tmp_path, monkeypatch):
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n\n```python\na = 1\n```\n\n<!-- compile-only -->\n\n```python\nimport nowhere\n```\n"
        "<!-- file: examples/huber_energy.py -->\n```py\nb = 2\n```\n```bash\nls\n```\n"
        "- item\n\n  ```python\n  c = 3\n  ```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    snippets = extract_snippets(doc)
    assert [(s.code, s.compile_only, s.file) for s in snippets] == [
        ("a = 1\n", False, None), ("import nowhere\n", True, None),
        ("b = 2\n", False, "examples/huber_energy.py"), ("c = 3\n", False, None),
    ]


# ------------------------------------------------------------------------------ docstrings
API = ROOT / "docs" / "api.md"
SECTION = re.compile(r"^##\s+`([\w.]+)`\s*$")
ENTRY = re.compile(r"^-\s+`([A-Za-z_]\w*)")


def api_sections() -> dict[str, list[str]]:
    """Module name -> the names listed under its heading in docs/api.md."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in API.read_text().splitlines():
        if m := SECTION.match(line):
            current = sections.setdefault(m.group(1), [])
        elif current is not None and (m := ENTRY.match(line)):
            current.append(m.group(1))
    return sections


def _import(name: str):
    if name.startswith("pcjax.interop.flax"):
        pytest.importorskip("flax")
    return importlib.import_module(name)


def public_objects(module) -> dict[str, object]:
    """Public functions and classes of a module: its ``__all__``, else those it defines."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [k for k, v in vars(module).items()
                 if not k.startswith("_") and getattr(v, "__module__", None) == module.__name__]
    objects = {k: getattr(module, k) for k in names}
    return {k: v for k, v in objects.items() if inspect.isfunction(v) or inspect.isclass(v)}


def missing_docstring(obj) -> bool:
    """True when ``obj`` has no docstring of its own (auto-generated dataclass/NamedTuple text does not count)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return True
    if inspect.isclass(obj):
        auto = re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc.strip(), flags=re.S)
        if auto and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields")):
            return True
    return False


def test_api_md_lists_the_top_level_api():
    import pcjax

    sections = api_sections()
    assert "pcjax" in sections, "docs/api.md needs a `pcjax` section"
    unlisted = sorted(set(pcjax.__all__) - set(sections["pcjax"]))
    assert not unlisted, f"pcjax.__all__ names missing from docs/api.md: {unlisted}"


@pytest.mark.parametrize("module_name", sorted(api_sections()))
def test_listed_modules_have_docstrings(module_name):
    module = _import(module_name)
    assert not missing_docstring(module), f"module {module_name} has no docstring"
    listed = api_sections()[module_name]
    absent = [n for n in listed if not hasattr(module, n)]
    assert not absent, f"docs/api.md lists names that {module_name} does not have: {absent}"
    names = set(public_objects(module)) | {n for n in listed if inspect.isfunction(getattr(module, n))
                                           or inspect.isclass(getattr(module, n))}
    if module_name == "pcjax":
        names |= {n for n in module.__all__ if not inspect.ismodule(getattr(module, n))}
    undocumented = sorted(n for n in names if missing_docstring(getattr(module, n)))
    assert not undocumented, f"public names without a docstring in {module_name}: {undocumented}"


def test_missing_docstring_detection():
    @dataclasses.dataclass
    class Auto:
        x: int = 0

    @dataclasses.dataclass
    class Documented:
        """Has a docstring."""

    class Inherits(Documented):
        pass

    def bare():
        pass

    assert missing_docstring(Auto) and missing_docstring(Inherits) and missing_docstring(bare)
    assert not missing_docstring(Documented) and not missing_docstring(missing_docstring)
