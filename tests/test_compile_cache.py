"""The persistent compilation cache: on by default, a folder of the user's cache, off with null, and a
second identical run (a new process) loads every program from the cache (hits, no misses) and computes
the same. How much faster that starts is a benchmark (benchmarks/compile_cache.py), not a unit test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcjax.compile_cache import cache_folder

ROOT = Path(__file__).resolve().parents[1]


def test_cache_folder_choices(monkeypatch, tmp_path):
    monkeypatch.delenv("PCJAX_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder("auto") == tmp_path / "pcjax" / "jax-compile"
    monkeypatch.setenv("PCJAX_COMPILE_CACHE", str(tmp_path / "c"))
    assert cache_folder("auto") == tmp_path / "c"
    assert cache_folder(str(tmp_path / "d")) == tmp_path / "d"
    for off in (None, "null", "false", False, "off"):
        assert cache_folder(off) is None


def test_runs_started_by_tests_never_write_to_the_users_cache():
    """conftest points ``auto`` at a folder of the test process, so the suite leaves ~/.cache alone."""
    import tempfile

    folder = cache_folder("auto")
    assert folder.is_relative_to(tempfile.gettempdir()) and folder.name.startswith("pcjax-test-jax-compile-")
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    assert not folder.is_relative_to(user)


def _run(tmp_path, name, cache):
    out = tmp_path / name
    cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), "dataset=digits", "algorithm=pc", "model.width=32",
           "trainer.epochs=1", "trainer.progress=false", "tracking.backends=[jsonl]", f"trainer.compile_cache={cache}",
           f"hydra.run.dir={out}"]
    env = {k: v for k, v in os.environ.items() if k != "PCJAX_COMPILE_CACHE"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "record.json").read_text())


def test_second_identical_run_loads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, "first", cache)
    assert any(cache.iterdir()), "the first run wrote no cache entry"
    second = _run(tmp_path, "second", cache)
    assert first["hardware"]["compile_cache"] == str(cache) == second["hardware"]["compile_cache"]
    s1, s2 = first["summary"], second["summary"]
    assert s1["compile_cache_hits"] == 0 and s1["compile_cache_misses"] > 0
    # the start-up compiles the same programs and finds every one of them in the cache
    assert s2["compile_cache_misses"] == 0 and s2["compile_cache_hits"] == s1["compile_cache_misses"], (s1, s2)
    assert s2["compile_seconds"] < s1["compile_seconds"], (s1, s2)
    assert second["summary"]["test_acc"] == first["summary"]["test_acc"]  # a hit computes the same
    off = _run(tmp_path, "off", "null")
    assert off["hardware"]["compile_cache"] is None
    assert off["summary"]["compile_cache_hits"] == off["summary"]["compile_cache_misses"] == 0


def test_the_cold_warm_benchmark_report():
    from benchmarks import compile_cache as bench

    row = lambda c: {"compile_seconds": c, "time_to_first_step_seconds": c + 0.5, "wall_seconds": c + 5}  # noqa: E731
    md = bench.markdown({"experiment": "x", "limit_train": 10, "epochs": 1, "machine": "m", "jax": "j", "command": "c",
                         "load_before": 0.1, "load_after": 0.2, "off": row(6.0), "cold": row(5.0), "warm": row(1.0)})
    assert "| cache warm (second run) | 1.00 | 1.50 | 6.0 |" in md and "**0.20**" in md
