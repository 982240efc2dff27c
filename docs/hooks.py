"""mkdocs hook: the pages that live outside docs/ (README.md, results/, benchmarks/) join the site.

mkdocs only builds files under ``docs_dir``, and ``mkdocs build --strict`` fails on a link whose target
is not among those files. The guides link to the repository with GitHub-style relative links
(``../results/README.md`` from ``docs/``, ``docs/design.md`` from the README), which is what GitHub
renders, so instead of relaxing link validation this hook

* adds the repository files listed in ``EXTRA`` to the site under their repository paths
  (``results/README.md`` -> ``results/``; the top-level README.md becomes ``readme.md`` because
  ``index.md`` is the home page), never copying them into docs/; and
* rewrites, before mkdocs validates them, the relative links of every page that cross between docs/
  and the rest of the repository to the site path of their target (links are resolved against the
  page's *repository* path, exactly as GitHub resolves them).

A link whose target is neither a docs/ page nor an ``EXTRA`` file is left alone, so mkdocs' own
validation reports it and ``--strict`` fails: a broken reference to a page stays an error.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from markdown import Extension
from markdown.treeprocessors import Treeprocessor
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
# Repository files (globs relative to the repository root) published beside docs/.
EXTRA = ["README.md", "results/*.md", "results/plots/*.png", "benchmarks/README.md", "benchmarks/results/*.md",
         "benchmarks/results/*.png",
         "benchmarks/results/*.json"]
# Repository path -> site path where they differ (README.md would collide with index.md as the home page).
RENAME = {"README.md": "readme.md"}

_site_of_repo: dict[str, str] = {}  # repository path -> site (virtual docs) path, every page and asset
_repo_of_site: dict[str, str] = {}
_current: list[str] = []  # site path of the page being rendered


def _docs_prefix(config) -> str:
    """The repository path of docs_dir; a docs_dir outside the repository (the tests' scratch copies)
    stands in for docs/."""
    docs = Path(config.docs_dir).resolve()
    return docs.relative_to(ROOT).as_posix() + "/" if docs.is_relative_to(ROOT) else "docs/"


def on_files(files: Files, config) -> Files:
    """Add the ``EXTRA`` repository files and record every file's repository path."""
    _site_of_repo.clear()
    _repo_of_site.clear()
    prefix = _docs_prefix(config)
    for f in files:
        _site_of_repo[prefix + f.src_uri] = f.src_uri
    for pattern in EXTRA:
        for path in sorted(ROOT.glob(pattern)):
            repo = path.relative_to(ROOT).as_posix()
            site = RENAME.get(repo, repo)
            if files.get_file_from_path(site) is not None:
                raise PluginError(f"docs/hooks.py: {repo} would be published as {site}, which docs/ already has")
            files.append(File.generated(config, site, abs_src_path=str(path)))
            _site_of_repo[repo] = site
    built: dict[str, str] = {}
    for f in files:
        if f.dest_uri in built:  # e.g. docs/results.md and results/README.md both become results/index.html
            raise PluginError(f"{built[f.dest_uri]} and {f.src_uri} would both be built as {f.dest_uri}")
        built[f.dest_uri] = f.src_uri
    _repo_of_site.update({site: repo for repo, site in _site_of_repo.items()})
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Remember which page the link rewriter is working on (pages render one at a time)."""
    _current[:] = [page.file.src_uri]
    return markdown


def on_config(config):
    """Register the link rewriter as a Markdown extension that runs before mkdocs' link validation."""
    config.markdown_extensions.append(_CrossLinks())
    return config


def site_link(url: str, page_site: str) -> str:
    """``url`` (relative, as written in the page at site path ``page_site``) pointing at its target's
    site path; unchanged when it is external, absolute, an anchor, or its target is not published."""
    scheme, netloc, path, query, fragment = urlsplit(url)
    if scheme or netloc or not path or path.startswith("/"):
        return url
    page_repo = _repo_of_site.get(page_site)
    if page_repo is None:
        return url
    target_repo = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo), path))
    target_site = _site_of_repo.get(target_repo)
    if target_site is None:
        return url
    rel = posixpath.relpath(target_site, posixpath.dirname(page_site) or ".")
    return urlunsplit(("", "", rel, query, fragment))


class _Rewrite(Treeprocessor):
    def run(self, root):
        if not _current:
            return
        for el in root.iter():
            for attr in ("href", "src"):
                if (url := el.get(attr)) is not None:
                    el.set(attr, site_link(url, _current[0]))


class _CrossLinks(Extension):
    def extendMarkdown(self, md):
        # mkdocs registers its link validation ("relpath") at priority 0; tree processors run from
        # the highest priority down, and inline links exist from "inline" (20) on.
        md.treeprocessors.register(_Rewrite(md), "pcjax_cross_links", 1)
