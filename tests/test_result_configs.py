"""Every row the results tables report has an experiment config that reproduces its runs.

For each run record committed under ``results/runs`` (top level: the rows of the results table),
``conf/experiment`` holds a config with the record's ``name``, and composing it with the run's seed
gives the run's configuration on every key the run recorded (keys added to the schema since then are
new defaults; run-only keys such as paths, trackers and progress bars are left out).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_ONLY = ("tracking.", "dataset.root", "dataset.download", "trainer.progress", "trainer.resume",
            "trainer.diagnostics", "trainer.checkpoint", "plugins")
# keys whose recorded value is what a newer default resolves to: algorithm.loss None follows the energy
EQUIVALENT = {("algorithm.loss", "gaussian", None)}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _rows() -> dict[str, Path]:
    """record name -> one record of that row (seed directories directly under results/runs/<row>/)."""
    rows: dict[str, Path] = {}
    for rec in sorted((ROOT / "results" / "runs").glob("*/seed*/record.json")):
        rows.setdefault(json.loads(rec.read_text())["name"], rec)
    return rows


def _configs() -> dict[str, str]:
    """config name -> the ``name:`` its file gives the run."""
    out = {}
    for f in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        m = re.search(r"^name: (\S+)$", f.read_text(), re.M)
        out[m[1] if m else f.stem] = f.stem
    return out


ROWS = _rows()


def test_every_reported_row_has_a_config():
    missing = sorted(set(ROWS) - set(_configs()))
    assert not missing, f"rows in results/runs without a conf/experiment config: {missing}"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_config_reproduces_the_recorded_run(name):
    from pcjax import load_config
    from pcjax.experiment import to_dict

    record = json.loads(ROWS[name].read_text())
    config = _configs().get(name)
    if config is None:
        pytest.fail(f"no config for {name}")
    composed = _flat(to_dict(load_config(config, overrides=[f"seed={record['seed']}"])))
    recorded = _flat(record["config"])
    diff = {k: (v, composed.get(k)) for k, v in recorded.items()
            if not k.startswith(RUN_ONLY) and v is not None and composed.get(k) != v
            and (k, v, composed.get(k)) not in EQUIVALENT}
    assert not diff, f"conf/experiment/{config}.yaml does not reproduce {ROWS[name]}: (recorded, composed) {diff}"
