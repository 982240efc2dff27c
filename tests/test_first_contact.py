"""First contact: the run's train.log, labels that name the energy terms, the record's metric names
documented, a clean install (no setuptools warnings from pyproject.toml) and the README's first screen."""

import json
import re
import sys
from pathlib import Path

import pytest

import pcjax as pj
from pcjax.config import Config
from pcjax.experiment import algorithm_label, run_experiment, to_dict

from conftest import tiny_config as tiny

ROOT = Path(__file__).resolve().parents[1]



# ------------------------------------------------------------------------------ train.log
def test_train_log_holds_the_runs_progress_and_a_resume_appends(tmp_path):
    """train.log was empty in every run directory."""
    run_experiment(tiny(), run_dir=tmp_path)
    first = (tmp_path / "train.log").read_text()
    assert f"starting digits_mlp_pc-se in {tmp_path}" in first
    assert re.search(r"256 training examples in \d+ batches of 64 per epoch", first) is None  # 10 % held out
    assert re.search(r"\d+ training examples in \d+ batches of 64 per epoch .* compiled in [\d.]+ s", first), first
    assert re.search(r"epoch 1/1: train_loss=[\d.]+ train_energy=[\d.e+-]+ train_acc=[\d.]+ val_acc=[\d.]+ "
                     r"test_acc=[\d.]+", first), first
    assert 'complete: {"name": "digits_mlp_pc-se"' in first
    more = tiny(epochs=2)
    more.trainer.resume, more.trainer.extend_epochs = str(tmp_path), True
    run_experiment(more, run_dir=tmp_path)
    log = (tmp_path / "train.log").read_text()
    assert log.startswith(first) and "resuming digits_mlp_pc-se" in log and "continuing at epoch 2" in log
    assert "epoch 2/2: train_loss=" in log
    import logging

    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("pcjax").handlers)  # closed


def test_train_log_records_a_failure(tmp_path):
    c = tiny()
    c.trainer.divergence_threshold = 1e-6
    with pytest.raises(pj.DivergenceError):
        run_experiment(c, run_dir=tmp_path)
    log = (tmp_path / "train.log").read_text()
    assert "[ERROR] DivergenceError: the loss reached" in log and log.count("[ERROR]") == 1


def test_a_fresh_run_archives_an_earlier_runs_log(tmp_path):
    (tmp_path / "train.log").write_text("an earlier run\n")
    with pytest.warns(UserWarning, match="files of an earlier run"):
        run_experiment(tiny(), run_dir=tmp_path)
    (archive,) = tmp_path.glob("previous-*")
    assert (archive / "train.log").read_text() == "an earlier run\n"
    assert "an earlier run" not in (tmp_path / "train.log").read_text()


# ------------------------------------------------------------------ labels name the energy terms
def _cfg(**energy) -> dict:
    c = to_dict(Config())
    c["energy"].update(energy)
    return c


def test_label_names_a_non_default_energy_term():
    """A run with energy.hidden=student_t or energy.output=student_t was labelled pc-se."""
    assert algorithm_label(_cfg()) == "pc-se"
    assert algorithm_label(_cfg(hidden="student_t")) == "pc-se+hidden:student_t"
    assert algorithm_label(_cfg(output="student_t")) == "pc-student_t"
    assert algorithm_label(_cfg(output="cross_entropy", hidden="se")) == "pc-ce"
    assert algorithm_label(_cfg(backward="huber")) == "pc-se"  # no top-down terms: the term is unused
    assert algorithm_label(_cfg(backward="huber", lam=0.1)) == "bpc-se+backward:huber"
    bp = _cfg(output="student_t")
    bp["algorithm"]["name"] = "bp"
    assert algorithm_label(bp) == "bp-student_t"
    bp["energy"]["hidden"] = "student_t"  # backprop has no hidden energy
    assert algorithm_label(bp) == "bp-student_t"


def test_record_of_a_student_t_run_names_the_term(tmp_path, monkeypatch):
    import jax.numpy as jnp
    from conftest import isolated_registries

    def student_t(pred, value, nu=3.0):
        return jnp.sum(0.5 * (nu + 1) * jnp.log1p((value - pred) ** 2 / nu), axis=tuple(range(1, pred.ndim)))

    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_energy("student_t", student_t)
        c = tiny()
        c.energy.hidden = "student_t"
        record = run_experiment(c, run_dir=tmp_path)
    assert record["algorithm"] == "pc-se+hidden:student_t"
    assert json.loads((tmp_path / "record.json").read_text())["algorithm"] == "pc-se+hidden:student_t"


def test_committed_results_keep_their_labels():
    """Every committed run record's label is what algorithm_label gives its config (the default
    terms' labels, and so the result tables' row names, did not change)."""
    records = [json.loads(p.read_text()) for p in (ROOT / "results").rglob("record.json")]
    records = [r for r in records if isinstance(r.get("config"), dict)]
    if not records:
        pytest.skip("no result records in this checkout")
    assert [r["algorithm"] for r in records] == [algorithm_label(r["config"]) for r in records]


# ------------------------------------------------------------------------ documentation
def test_train_prefix_of_custom_metrics_is_documented():
    text = (ROOT / "docs" / "extending.md").read_text()
    assert "**Metric names in the record.**" in text and "`train_gated`" in text and "prefix" in text


# ---------------------------------------------------------------------------- the install
def test_pyproject_lists_every_config_folder_and_an_spdx_license():
    """setuptools warned ~14 times on install: the license table is deprecated, and every conf/
    folder was a package "absent from the packages configuration"."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    packages = set(meta["tool"]["setuptools"]["packages"])
    folders = {"pcjax.conf." + ".".join(p.relative_to(ROOT / "conf").parts) for p in (ROOT / "conf").rglob("*")
               if p.is_dir() and p.name != "__pycache__"}
    assert folders <= packages, sorted(folders - packages)
    code = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "pcjax").rglob("*")
            if p.is_dir() and (p / "__init__.py").exists()}
    assert code <= packages, sorted(code - packages)


# ------------------------------------------------------------------- the README's first screen
def test_readme_quickstart_says_what_make_run_does_and_what_the_default_is():
    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quickstart"):text.index("## The method in one paragraph")]
    for fragment in ("The first call creates `.venv`", "`time make run` took", "Expect a test accuracy near 97 %",
                     "outputs/digits_mlp_bpc/seed0/", "`train.log`", "`.venv/bin/pcjax`", "source .venv/bin/activate",
                     "results/deep_pc.md", "below plain PC", "`algorithm=pc`", "`algorithm=bp`"):
        assert fragment in quick, fragment
    assert quick.index("LALR:") < quick.index("neither the bidirectional energy nor LALR")  # defined before use
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PY) experiments/train.py $(ARGS)" in makefile  # `make run ARGS=...` as the README says
