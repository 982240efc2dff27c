"""Every configuration key has a description, and `--help` shows them (the template is current)."""

import subprocess
import sys
from pathlib import Path

from pcjax.config_doc import DESCRIPTIONS, TEMPLATE, help_template, schema_keys

ROOT = Path(__file__).resolve().parents[1]


def test_every_schema_key_is_described_and_nothing_else():
    keys = set(schema_keys())
    assert not sorted(keys - set(DESCRIPTIONS)), "keys without a description in pcjax/config_doc.py"
    assert not sorted(set(DESCRIPTIONS) - keys), "descriptions of keys the schema does not have"


def test_help_template_is_current_and_the_cli_prints_it():
    assert TEMPLATE.read_text() == help_template(), "run: python -m pcjax.config_doc"
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--help"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT).stdout
    assert "algorithm.latent.lr" in out and DESCRIPTIONS["energy.lam"] in out and "epc" in out
