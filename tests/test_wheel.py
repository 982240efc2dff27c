"""A wheel install works from any folder: the configs ship in the package, `pcjax train` trains digits."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_trains_digits_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    # no setuptools warnings from pyproject.toml (the license table; conf/ folders absent from `packages`)
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stderr[-3000:]
    (wheel,) = wheels.glob("pcjax-*.whl")
    target = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    assert (target / "pcjax" / "conf" / "config.yaml").exists()
    assert (target / "pcjax" / "conf" / "experiment" / "mnist_mlp_pc_se.yaml").exists()
    shipped = {p.relative_to(target / "pcjax" / "conf") for p in (target / "pcjax" / "conf").rglob("*.yaml")}
    assert shipped == {p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")}  # every config
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), WANDB_MODE="offline", WANDB_SILENT="true")
    where = subprocess.run([sys.executable, "-c", "import pcjax; print(pcjax.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    script = target / "bin" / "pcjax"
    assert script.exists()
    proc = subprocess.run([sys.executable, str(script), "train", "algorithm=pc", "trainer.epochs=3",
                           "trainer.progress=false"], cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == "digits" and summary["algorithm"] == "pc-se" and summary["test_acc"] > 0.5
    assert Path(summary["run_dir"]).resolve().is_relative_to(empty.resolve())
    help_out = subprocess.run([sys.executable, str(script), "--help"], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=60).stdout
    assert "pcjax train" in help_out


def test_an_editable_install_prints_no_warning(tmp_path):
    """``pip install -e`` (what ``make install`` runs) prints no warning from the project's packaging; the lines
    in which pip reports its own index configuration are not the project's."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "-e",
                           str(ROOT), "--target", str(tmp_path / "site")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    own = [line for line in (proc.stdout + proc.stderr).splitlines()
           if line.strip() and "is ignored: it is neither a file nor a directory" not in line]
    assert not any("warn" in line.lower() or "careful" in line.lower() for line in own), "\n".join(own[-40:])
    (pth,) = (tmp_path / "site").glob("__editable__.pcjax*.pth")
    assert Path(pth.read_text().strip()).resolve() == ROOT.resolve()
