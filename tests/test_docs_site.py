"""The documentation site builds with ``mkdocs build --strict``, and a broken reference fails it.

The site (mkdocs.yml) is the guides in docs/, the pages that docs/hooks.py publishes from the
repository (README.md, results/, benchmarks/) and the API reference that mkdocstrings renders from the
docstrings. The second and third tests build a scratch copy of the same configuration with broken
references added, so they check that strict mode still catches what it should.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason='mkdocs / mkdocstrings[python] not installed (pip install -e ".[docs]")',
)


def mkdocs_build(site: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    if config is not None:
        cmd += ["--config-file", str(config)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def squeezed(text: str) -> str:
    """`text` without whitespace and backticks (markup splits a rendered sentence at code spans)."""
    return re.sub(r"[\s`]+", "", text)


def text_of(page: Path) -> str:
    """The visible text of a built page, squeezed."""
    return squeezed(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())))


def test_site_builds_strictly_and_renders_the_docstrings(tmp_path):
    import pcjax

    site = tmp_path / "site"
    result = mkdocs_build(site)
    assert result.returncode == 0, result.stdout + result.stderr
    api = text_of(site / "reference" / "pcjax" / "index.html")
    for obj in (pcjax.PCALM, pcjax.PC, pcjax.Inference):
        summary = obj.__doc__.strip().splitlines()[0]
        assert squeezed(summary) in api, f"{obj.__name__}'s docstring is not rendered"
    # a submodule's reference page and the pages published from outside docs/
    assert "pcjax.inference.relax" in (site / "reference" / "inference" / "index.html").read_text()
    for page in ("readme", "results", "results/deep_pc", "benchmarks", "design", "extending", "api"):
        assert (site / page / "index.html").is_file(), page
    assert "config (Hydra, typed)" in (site / "index.html").read_text()  # the design picture, included
    # cross links were resolved to site pages, not left as repository paths
    home = (site / "index.html").read_text()
    assert 'href="readme/"' in home and 'href="results/deep_pc/"' in home


def scratch_config(tmp_path: Path, pages: dict[str, str], modules: dict[str, str] | None = None) -> Path:
    """mkdocs.yml rewritten to build a copy of docs/ plus `pages` (and modules importable by mkdocstrings)."""
    import yaml

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    for name, text in pages.items():
        (docs / name).write_text(text)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name, text in (modules or {}).items():
        (pkg / f"{name}.py").write_text(text)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / "docs" / "hooks.py")]
    (mkdocstrings,) = [p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p]
    mkdocstrings["handlers"]["python"]["paths"] = [str(ROOT), str(pkg)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_unknown_identifier_fails_the_build(tmp_path):
    config = scratch_config(tmp_path, {"broken.md": "# Broken\n\n::: pcjax.does_not_exist\n"})
    result = mkdocs_build(tmp_path / "site", config)
    assert result.returncode != 0
    assert "pcjax.does_not_exist" in result.stdout + result.stderr


def test_broken_references_fail_the_strict_build(tmp_path):
    pages = {
        "broken.md": "# Broken\n\n[a page](no_such_page.md), [a results file](../results/no_such_file.md), "
                     "[an API name][pcjax.NoSuchName], [a heading](design.md#no-such-heading)\n\n::: badmod\n",
    }
    bad_docstring = '"""A module."""\n\n\ndef f(x: int) -> int:\n    """Doc.\n\n    Args:\n        y: not a parameter.\n    """\n'
    config = scratch_config(tmp_path, pages, {"badmod": bad_docstring})
    result = mkdocs_build(tmp_path / "site", config)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Aborted with" in out and "strict mode" in out, out
    for expected in ("no_such_page.md", "no_such_file.md", "pcjax.NoSuchName", "no-such-heading", "Parameter 'y'"):
        assert expected in out, f"strict mode did not report {expected!r}:\n{out}"
    # the scratch copy differs from the real site only by the broken page: nothing else was reported
    warnings = [ln for ln in out.splitlines() if ln.startswith("WARNING")]
    assert all("broken.md" in ln or "badmod" in ln or "NoSuchName" in ln for ln in warnings), "\n".join(warnings)
