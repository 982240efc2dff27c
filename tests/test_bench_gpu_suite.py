"""The GPU suite's ``--smoke`` mode runs every section on a CPU, without Hydra, OmegaConf or wandb.

* ``python -m benchmarks.gpu_suite --smoke`` in a fresh interpreter where importing ``hydra``,
  ``omegaconf`` or ``wandb`` fails (as on the GPU machine, which has none of them): every section
  produces its results (nothing skipped for time), every pcjax competitor has a step time, torch and
  PCX have one unless they are not installed, and the JSON and markdown files are written;
* the tuned values the suite restates equal ``conf/experiment/cifar10_vgg5_{pc,bp}_se.yaml`` and
  ``conf/algorithm/epc.yaml``. No timing assertions.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("hydra", "omegaconf", "wandb")


def _installed(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001 - an installed but broken package counts as missing
        return False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_suite")
    block = tmp / "blocked"
    block.mkdir()
    for name in BLOCKED:  # packages whose import fails, first on the path
        (block / name).mkdir()
        (block / name / "__init__.py").write_text(f"raise ImportError('{name} is not available here')\n")
    out = tmp / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu")
    # a budget far above the smoke's need: the test checks that every section runs, whatever else loads the machine
    # (at the smoke default of 120 s a loaded 2-core machine ran out of time before the bf16 section)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--quiet", "--budget-s", "3600",
                           "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(out.glob("*-gpu_suite-smoke.*"))
    assert [f.suffix for f in files] == [".json", ".md"]
    return json.loads(files[0].read_text()), files[1].read_text(), json.loads(proc.stdout.strip().splitlines()[-1])


def test_smoke_runs_every_section(smoke):
    res, md, printed = smoke
    assert res["smoke"] and res["data"] == "synthetic" and res["skipped"] == []
    rows = {(r["workload"], r["T"]): r for r in res["step_times"]}
    assert set(rows) == {("mlp", 2)}
    mlp = rows[("mlp", 2)]["competitors"]
    for name in ("pcjax_pc", "pcjax_epc", "pcjax_bp", "pcjax_pc_bf16", "pcjax_bp_bf16"):
        assert mlp[name]["step_s"] > 0 and mlp[name]["compile_s"] >= 0 and mlp[name]["mem_bytes"] > 0, name
    for name, module in (("torch_pc", "torch"), ("torch_bp", "torch"), ("pcx_pc", "pcx")):
        if _installed(module):
            assert mlp[name]["step_s"] > 0, name
        else:
            assert name not in mlp and module in rows[("mlp", 2)]["notes"]
    assert rows[("mlp", 2)]["ratios"]["pc_bf16_over_f32"] > 0
    for section, keys in (("bf16", ("float32", "bfloat16")), ("cifar", ("pc_se", "bp_se"))):
        assert sorted(res[section]) == sorted(keys)
        for k in keys:
            run = res[section][k]
            assert run["epochs_run"] == 1 and 0.0 <= run["final_test_acc"] <= 1.0 and run["compile_s"] > 0
    assert res["bf16"]["bfloat16"]["runtime"]["compute_dtype"] == "bfloat16"
    assert "## Step time" in md and "| mlp | 2 | 8 |" in md
    assert printed["device"] == res["device"] and "mlp@T=2" in printed["step_times"]


def test_restated_tuned_values_equal_the_configs():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from benchmarks import gpu_suite as g
    from pcjax.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        pc = OmegaConf.to_container(compose("config", overrides=["experiment=cifar10_vgg5_pc_se"]), resolve=True)
        bp = OmegaConf.to_container(compose("config", overrides=["experiment=cifar10_vgg5_bp_se"]), resolve=True)
        epc = OmegaConf.to_container(compose("config", overrides=["algorithm=epc"]), resolve=True)
    GlobalHydra.instance().clear()
    a = pc["algorithm"]
    assert g.VGG5_PC_SE == dict(T=a["T"], latent_lr=a["latent"]["lr"], latent_momentum=a["latent"]["momentum"],
                                lr=pc["optim"]["lr"], weight_decay=pc["optim"]["weight_decay"],
                                batch_size=pc["trainer"]["batch_size"], epochs=pc["trainer"]["epochs"],
                                act=pc["model"]["act"])
    assert g.VGG5_BP_SE == dict(lr=bp["optim"]["lr"], weight_decay=bp["optim"]["weight_decay"],
                                batch_size=bp["trainer"]["batch_size"], epochs=bp["trainer"]["epochs"],
                                act=bp["model"]["act"])
    assert g.EPC_LATENT == dict(lr=epc["algorithm"]["latent"]["lr"], momentum=epc["algorithm"]["latent"]["momentum"])
    assert pc["dataset"]["augment"]["crop_padding"] == 4 and pc["dataset"]["augment"]["flip"]
    assert pc["optim"]["schedule"] == bp["optim"]["schedule"] == "warmup_cosine"
