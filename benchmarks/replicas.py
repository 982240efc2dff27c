"""Seeds trained one after another vs as one vmapped replica group (``trainer.replicas``).

    PCJAX_DATA_DIR=/tmp/ci-data python -m benchmarks.replicas [--seeds 7] [--epochs 2] [--limit-train 12000]
                                                             [--md benchmarks/results/replicas_cpu.md]

Trains the MNIST MLP row (``conf/experiment/mnist_mlp_pc_se``: 784-128x3-10, PC-SE, T=8, batch 128;
the ``digits`` dataset when MNIST is not under ``$PCJAX_DATA_DIR``) for ``--seeds`` seeds in one
process, twice: ``sequential``, one ``run_experiment`` per seed (each loads its data, places it on
the device and compiles: the persistent compilation cache is off, ``trainer.compile_cache=null``), and
``replicas``, one ``run_experiment`` with ``trainer.replicas=<seeds>``. Both write their records and
checkpoints as usual (JSONL tracking only). Reported per mode: the wall time of all seeds, start-up
and compilation included, and the training examples per second it amounts to (seeds x epochs x
examples per epoch / wall time); the steady-state examples per second from the records' epoch
seconds (epochs after the first; for the group its one shared wall time per epoch); and the largest
difference in final test accuracy between a replica and its separate run (a check that both trained
the same runs). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _mnist_present() -> bool:
    root = Path(os.environ.get("PCJAX_DATA_DIR") or Path.home() / ".cache" / "pcjax")
    return (root / "mnist" / "train-images-idx3-ubyte.gz").exists()


def _config(dataset: str, epochs: int, limit_train: int | None, seed: int, replicas: int):
    """The MNIST MLP row's config for ``dataset`` with the benchmark's settings."""
    from pcjax.cli import load_config

    overrides = [f"dataset={dataset}", f"trainer.epochs={epochs}", "trainer.progress=false",
                 "trainer.compile_cache=null", "tracking.backends=[jsonl]", f"seed={seed}",
                 f"trainer.replicas={replicas}", "dataset.download=false"]
    if limit_train:
        overrides.append(f"dataset.limit_train={limit_train}")
    return load_config("mnist_mlp_pc_se", overrides)


def _steady_seconds(record: dict) -> float:
    """Mean seconds of the epochs after the first (the first when there is one epoch)."""
    secs = [e["seconds"] for e in record["epochs"]]
    rest = secs[1:] or secs
    return sum(rest) / len(rest)


def run(seeds: int, epochs: int, limit_train: int | None, dataset: str, out: Path) -> dict:
    """Both modes, one after the other, in this process; the measurements."""
    from pcjax.experiment import run_experiment

    t0 = time.perf_counter()
    singles = [run_experiment(_config(dataset, epochs, limit_train, s, 1), run_dir=out / "sequential" / f"seed{s}")
               for s in range(seeds)]
    wall_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    group = run_experiment(_config(dataset, epochs, limit_train, 0, seeds), run_dir=out / "replicas")
    wall_rep = time.perf_counter() - t0
    c = singles[0]["config"]
    n_train = int(_n_train(dataset, limit_train) * (1 - c["trainer"]["val_fraction"]))
    per_epoch = n_train // c["trainer"]["batch_size"] * c["trainer"]["batch_size"]
    total = seeds * epochs * per_epoch
    steady_seq = sum(_steady_seconds(r) for r in singles)
    steady_rep = _steady_seconds(group["replicas"][0])
    diff = max(abs(a["summary"]["test_acc"] - b["summary"]["test_acc"]) for a, b in zip(group["replicas"], singles))
    return {
        "dataset": dataset, "seeds": seeds, "epochs": epochs, "examples_per_epoch": per_epoch,
        "sequential": {"wall_s": wall_seq, "examples_per_s": total / wall_seq,
                       "compile_s": sum(r["summary"]["compile_seconds"] for r in singles),
                       "steady_examples_per_s": seeds * per_epoch / steady_seq},
        "replicas": {"wall_s": wall_rep, "examples_per_s": total / wall_rep,
                     "compile_s": group["replicas"][0]["summary"]["compile_seconds"],
                     "steady_examples_per_s": seeds * per_epoch / steady_rep},
        "max_test_acc_difference": diff,
    }


def _n_train(dataset: str, limit_train: int | None) -> int:
    from pcjax.data import load_dataset

    return int(load_dataset(dataset, limit_train=limit_train, download=False).train_x.shape[0])


def hardware() -> dict:
    """CPU model, cores, JAX version and backend."""
    import jax

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend()}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def markdown(res: dict, command: str) -> str:
    """The results as a short markdown page."""
    hw, s, r = res["hardware"], res["sequential"], res["replicas"]
    rows = [("sequential (one run per seed)", s), (f"one run, trainer.replicas={res['seeds']}", r)]
    lines = [
        "# Seeds as one vmapped replica group vs one run per seed", "",
        f"{res['seeds']} seeds of the MNIST MLP row (`mnist_mlp_pc_se`: 784-128x3-10, PC-SE, T=8, batch 128) on "
        f"`{res['dataset']}`, {res['epochs']} epochs of {res['examples_per_epoch']} training examples, in one process; "
        f"{hw['cpu']} ({hw['cores']} cores), JAX {hw['jax']} ({hw['backend']}). The machine was shared with other "
        f"jobs: load average {res['load_before']} before and {res['load_after']} after (1, 5, 15 min), so absolute "
        "times are upper bounds; the ratio is the point. Persistent compilation cache off: every separate run "
        f"loads its data and compiles. Command: `{command}`.", "",
        "| mode | wall s (all seeds, start-up included) | examples/s | compile s | steady examples/s |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['wall_s']:.1f} | {m['examples_per_s']:.0f} | {m['compile_s']:.1f} | "
                     f"{m['steady_examples_per_s']:.0f} |")
    lines += ["", f"Replicas / sequential: {r['examples_per_s'] / s['examples_per_s']:.2f}x examples/s end to end, "
              f"{r['steady_examples_per_s'] / s['steady_examples_per_s']:.2f}x in the steady state. Largest difference "
              f"in final test accuracy between a replica and its separate run: {res['max_test_acc_difference']:.2g} "
              "(the same runs up to float rounding).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=7)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=12000, help="training images (0: all)")
    p.add_argument("--dataset", default="auto", help="mnist, digits, or auto (mnist when present)")
    p.add_argument("--md", default=None, help="write the markdown results here")
    p.add_argument("--json", default=None, help="write the JSON results here")
    a = p.parse_args(argv)
    dataset = a.dataset if a.dataset != "auto" else ("mnist" if _mnist_present() else "digits")
    res = {"load_before": loadavg(), "hardware": hardware()}
    with tempfile.TemporaryDirectory(prefix="pcjax-bench-replicas-") as tmp:
        res.update(run(a.seeds, a.epochs, a.limit_train or None, dataset, Path(tmp)))
    res["load_after"] = loadavg()
    command = "python -m benchmarks.replicas " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.md:
        Path(a.md).write_text(markdown(res, command.strip()), encoding="utf-8")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
