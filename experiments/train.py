"""Train one configuration: ``python experiments/train.py [overrides...]`` (Hydra).

Examples::

    python experiments/train.py                                   # digits, bidirectional PC + LALR
    python experiments/train.py algorithm=pc energy=gaussian lalr=constant
    python experiments/train.py experiment=mnist_mlp_pc_se
    python experiments/train.py -m experiment=mnist_mlp_pc_se seed=0,1,2
    python experiments/train.py experiment=mnist_mlp_pc_se trainer.resume=true

The last printed line is one JSON object summarising the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from pcjax.config import register_configs  # noqa: E402
from pcjax.errors import PCJaxError  # noqa: E402
from pcjax.plugins import load_plugins, plugins_from_overrides  # noqa: E402

register_configs()
try:  # before composition: a plugin's algorithms are config-group choices (algorithm=my_rule)
    load_plugins(plugins_from_overrides(sys.argv[1:]))
except PCJaxError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    import logging

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    from pcjax.experiment import run_experiment, summary_line

    try:
        record = run_experiment(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except PCJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(summary_line(record), flush=True)
    # Sweepers (e.g. Optuna) maximise this: the validation accuracy, never the test accuracy.
    return record["summary"].get("val_acc")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    main()
