"""Start-up cost of a run: compilation, time to the first step, and what the first epoch still pays.

    python -m benchmarks.startup [--experiment mnist_mlp_pc_se] [--limit-train 6000] [--epochs 4] [--override K=V]

Trains the experiment's config on the first ``--limit-train`` images for ``--epochs`` epochs (no
checkpoints, no trackers) and prints one JSON object: every epoch's seconds, the first epoch's excess
over the mean of the later ones (compilation or one-off work hidden in the timed first epoch),
``compile_seconds`` and ``time_to_first_step_seconds`` from the record's summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="mnist_mlp_pc_se")
    p.add_argument("--limit-train", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable), e.g. "
                   "trainer.compile_cache=null")
    a = p.parse_args(argv)
    import pcjax
    from pcjax.cli import train

    cfg = pcjax.load_config(a.experiment, overrides=[
        f"trainer.epochs={a.epochs}", f"dataset.limit_train={a.limit_train}", "trainer.progress=false",
        "trainer.checkpoint=false", "tracking.backends=[none]", *a.override])
    with tempfile.TemporaryDirectory() as run_dir:
        record = train(cfg, run_dir)
    secs = [e["seconds"] for e in record["epochs"]]
    print(json.dumps({"experiment": a.experiment, "epoch_seconds": secs,
                      "first_epoch_excess_seconds": secs[0] - sum(secs[1:]) / max(len(secs) - 1, 1),
                      "compile_seconds": record["summary"]["compile_seconds"],
                      "time_to_first_step_seconds": record["summary"].get("time_to_first_step_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
