"""The end-of-sweep report of ``experiments/train.py -m``: a Hydra callback (registered in
``conf/config.yaml`` under ``hydra.callbacks``) that lists the jobs whose record is not ``complete``
and makes the multirun exit with status 1 when there are any."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    """After a multirun: print which jobs failed (from their records) and exit non-zero if any did."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Report on ``config.hydra.sweep.dir``; ``sys.exit(1)`` when a job did not complete."""
        from .runs import sweep_summary

        text, failed = sweep_summary(config.hydra.sweep.dir)
        print(text, file=sys.stderr, flush=True)  # stdout keeps the jobs' JSON summaries
        if failed:
            sys.exit(1)
