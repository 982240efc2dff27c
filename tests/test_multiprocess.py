"""Two real processes on 127.0.0.1 (``jax.distributed``, CPU collectives) train one model.

Each process has one CPU device; together they form a 2-device mesh (``trainer.devices=all``). The
result must equal a single process with two forced host devices (same mesh size, same batch split):
same per-epoch losses and accuracies, same final parameters. Only process 0 writes the record and
the checkpoints, into the one run directory both processes share.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["algorithm=pc", "energy=gaussian", "lalr=constant", "algorithm.T=4", "trainer.epochs=2", "model.width=32",
        "model.depth=2", "trainer.progress=false", "trainer.batch_size=64", "trainer.eval_batch_size=100",
        "tracking.backends=[jsonl]"]


def _env(devices: int) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled", JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params(run_dir: Path) -> list[np.ndarray]:
    """Every floating-point array of the run's latest checkpoint (parameters and optimiser state)."""
    from pcjax.checkpoint import CheckpointManager, read_checkpoint

    path = CheckpointManager(run_dir).latest_path()
    assert path is not None, f"no checkpoint in {run_dir}"
    header, payload = read_checkpoint(path)
    specs = {s["path"]: s for s in header["fingerprint"]["leaves"] if s["kind"] == "array"}
    out = []
    for e in header["arrays"]:
        spec = specs.get(e["path"])
        if spec is not None and spec["dtype"].startswith("float"):
            out.append(np.frombuffer(payload[e["offset"]:e["offset"] + e["nbytes"]], spec["dtype"]))
    assert out
    return out


def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
    train = [sys.executable, str(ROOT / "experiments" / "train.py")]
    single = tmp_path / "single"
    ref = subprocess.run([*train, *ARGS, "trainer.devices=2", f"hydra.run.dir={single}"], cwd=tmp_path, env=_env(2),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]

    shared = tmp_path / "two_processes"
    port = _free_port()
    procs = [subprocess.Popen([*train, *ARGS, "trainer.devices=all", "trainer.distributed=on",
                               f"trainer.coordinator=127.0.0.1:{port}", "trainer.num_processes=2",
                               f"trainer.process_id={i}", f"hydra.run.dir={shared}"],
                              cwd=tmp_path, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]

    a = json.loads((single / "record.json").read_text())
    b = json.loads((shared / "record.json").read_text())
    assert a["hardware"]["devices"] == 2 and a["hardware"]["processes"] == 1
    assert b["hardware"]["devices"] == 2 and b["hardware"]["processes"] == 2
    assert b["status"] == "complete" and len(b["epochs"]) == 2
    for ea, eb in zip(a["epochs"], b["epochs"]):
        for key in ("train_loss", "train_energy", "train_acc", "val_acc", "test_acc"):
            np.testing.assert_allclose(eb[key], ea[key], rtol=1e-5, atol=1e-7, err_msg=key)
    for pa, pb in zip(_params(single), _params(shared)):
        np.testing.assert_allclose(pb, pa, rtol=1e-5, atol=1e-6)
    # one writer: the summary line of both processes names the shared directory; only one record exists
    assert json.loads(outs[1][0].strip().splitlines()[-1])["run_dir"] == str(shared)
    assert len(list(shared.rglob("record.json"))) == 1
