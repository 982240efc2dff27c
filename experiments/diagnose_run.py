"""Per-block diagnostics of a finished (or checkpointed) run, read from its latest checkpoint.

For a run trained without ``trainer.diagnostics=true`` (the deep rows skip it for speed), this
rebuilds the run's dataset, model and algorithm from the configuration in its ``record.json``,
loads the training state from its ``latest`` checkpoint and reports, on a fixed batch of training
images (the first ``--batch`` of the run's own training split), each block's weight update against
backprop's gradient on the same model and batch (``pcjax.diagnostics``):

    cos_l = <Delta theta_l, dL/dtheta_l> / (||Delta theta_l|| ||dL/dtheta_l||),
    size_l = ||Delta theta_l|| / ||dL/dtheta_l||.

Usage::

    python experiments/diagnose_run.py results/runs/fashion_mnist_resmlp128e5_epcg_se/seed0 \
        [--batch 64] [--json OUT.json] [--set algorithm.T=128 ...]

Prints one line per block (input -> output) and a summary (min / median cos); ``--json`` also writes
the numbers, the checkpoint's epoch and the batch size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def diagnose_run(run_dir: str | Path, batch: int | None = None, overrides: dict | None = None) -> dict:
    """The run's per-block diagnostics at its latest checkpoint: ``{"epoch", "batch", "cosine_bp",
    "size_ratio", "update_norm", "bp_grad_norm"}`` (lists, input -> output). Raises ``FileNotFoundError``
    naming what is missing (no record, no checkpoint). ``overrides`` (``{"algorithm.T": 128}``) rebuild the
    algorithm with another setting before the probe (``pcjax.load_run``)."""
    import dataclasses

    from pcjax.data import split_validation
    from pcjax.trained import load_run
    from pcjax.training import _diagnostics

    run = load_run(run_dir, overrides)
    cfg = dataclasses.replace(run.trainer, batch_size=int(batch or run.trainer.batch_size))
    data = run.data
    train, _ = split_validation(data, cfg.val_fraction, cfg.seed)
    # training's own probe: the same batch preparation (crop, normalisation) and output loss
    diagnose = _diagnostics(run.algorithm, run.compiled, train, data.num_classes, cfg)
    d = diagnose(run.state)
    b = min(cfg.batch_size, train.train_x.shape[0])
    size = [u / g if g > 0 else float("nan") for u, g in zip(d["update_norm"], d["bp_grad_norm"])]
    return {"epoch": run.epoch, "batch": b, "cosine_bp": d["cosine_bp"], "size_ratio": size,
            "update_norm": d["update_norm"], "bp_grad_norm": d["bp_grad_norm"], "overrides": dict(overrides or {})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory holding record.json and its checkpoints")
    p.add_argument("--batch", type=int, default=None, help="images in the fixed batch (default: the run's batch size)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the run's config before the probe, e.g. --set algorithm.T=128 (repeatable)")
    a = p.parse_args(argv)
    import yaml

    overrides = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    try:
        out = diagnose_run(a.run_dir, a.batch, overrides)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cos = out["cosine_bp"]
    changed = "".join(f", {k}={v}" for k, v in overrides.items())
    print(f"{a.run_dir}: checkpoint after epoch {out['epoch']}, {out['batch']} training images{changed}")
    print("block  cos_to_BP  update/BP_size")
    for i, (cs, sz) in enumerate(zip(cos, out["size_ratio"]), start=1):
        print(f"{i:5d}  {cs:9.3f}  {sz:14.3g}")
    print(f"min cos {min(cos):.3f}, median cos {statistics.median(cos):.3f}, "
          f"blocks with cos >= 0.99: {sum(c >= 0.99 for c in cos)} of {len(cos)}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
