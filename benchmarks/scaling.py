"""Training throughput (examples/s) against the device count of ``trainer.devices``.

    python -m benchmarks.scaling --devices 1,2,4 --json benchmarks/results/cpu-2core-scaling.json
    python -m benchmarks.scaling --devices 1,2,4,8 --forced 0     # real devices (a multi-GPU machine)

Every point is a fresh process (``--forced N`` > 0 makes it see N host devices through
``XLA_FLAGS=--xla_force_host_platform_device_count``; on a CPU they share the same cores, so this
checks the overhead of the data-parallel path, not a speed-up). In it, ``pcjax.fit`` trains the
MNIST-sized MLP (784-128x3-10) on a synthetic 28x28 dataset for ``--epochs`` epochs with PC-SE
(T = ``--T``) and BP at the global batch ``--batch``; the throughput is the training examples of
the last epoch over its seconds (compilation excluded). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(n: int, algo: str, T: int, batch: int, epochs: int, n_train: int) -> dict:
    """Train in this process on ``n`` devices; returns the measured point."""
    import jax

    from pcjax import load_config
    from pcjax.data.synthetic import load_synthetic
    from pcjax.experiment import build, to_dict
    from pcjax.training import TrainerConfig, fit

    overrides = ["model=mlp", "model.width=128", "model.depth=3", f"trainer.batch_size={batch}"]
    overrides += (["algorithm=bp"] if algo == "bp" else
                  ["algorithm=pc", f"algorithm.T={T}", "energy=gaussian", "lalr=constant"])
    c = to_dict(load_config(None, overrides=overrides))
    data = load_synthetic(image_shape=(28, 28, 1), n_train=n_train, n_test=1000)
    steps = n_train // batch
    model, algorithm = build(c, steps, data.image_shape, data.num_classes)
    cfg = TrainerConfig(epochs=epochs, batch_size=batch, eval_batch_size=1000, val_fraction=0.0, progress=False,
                        checkpoint=False, devices=n)
    _, record = fit(algorithm, model, data, cfg)
    last = record["epochs"][-1]
    return {"devices": n, "algorithm": algo, "T": T if algo != "bp" else None, "batch": batch,
            "examples_per_s": steps * batch / last["seconds"], "epoch_s": last["seconds"],
            "compile_s": record["summary"]["compile_seconds"], "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4")
    p.add_argument("--forced", type=int, default=-1,
                   help="host devices to force per process (-1: the largest --devices value; 0: do not force)")
    p.add_argument("--algos", default="pc,bp")
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-train", type=int, default=16384)
    p.add_argument("--json", default=None, help="append the result to this JSON list file")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--algo", default="pc", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.algo, a.T, a.batch, a.epochs, a.n_train)), flush=True)
        return 0
    counts = [int(n) for n in a.devices.split(",")]
    forced = max(counts) if a.forced < 0 else a.forced
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    if forced > 0:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={forced}".strip()
    points = []
    for algo in a.algos.split(","):
        for n in counts:
            cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(n), "--algo", algo, "--T", str(a.T),
                   "--batch", str(a.batch), "--epochs", str(a.epochs), "--n-train", str(a.n_train)]
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            point = json.loads(proc.stdout.strip().splitlines()[-1])
            points.append(point)
            print(f"{algo:>3} devices={n}: {point['examples_per_s']:9.0f} examples/s "
                  f"(epoch {point['epoch_s']:.2f} s, compile {point['compile_s']:.1f} s)", flush=True)
    base = {algo: next(p["examples_per_s"] for p in points if p["algorithm"] == algo and p["devices"] == counts[0])
            for algo in a.algos.split(",")}
    for point in points:
        point["speedup"] = point["examples_per_s"] / base[point["algorithm"]]
    result = {"benchmark": "scaling", "forced_host_devices": forced, "cpu_count": os.cpu_count(),
              "processor": platform.processor() or platform.machine(), "load_1min": os.getloadavg()[0],
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "points": points}
    if a.json:
        path = Path(a.json)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + [result], indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
