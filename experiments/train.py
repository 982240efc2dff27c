"""Train one configuration: ``python experiments/train.py [overrides...]`` (Hydra; ``pcjax train`` is the same).

Examples::

    python experiments/train.py                                   # digits, bidirectional PC + LALR
    python experiments/train.py algorithm=pc
    python experiments/train.py experiment=mnist_mlp_pc_se
    python experiments/train.py -m experiment=mnist_mlp_pc_se seed=0,1,2
    python experiments/train.py experiment=mnist_mlp_pc_se trainer.resume=true

The last printed line is one JSON object summarising the run. Exit status: 0 on success; 2 for an
error (``error: ...`` on stderr); 130 after Ctrl-C (the record is marked ``interrupted`` and the
command that resumes the run is printed). In a sweep (``-m``) a failing job is recorded as failed
(``record.json`` with ``status`` and ``error`` in its directory) and the other jobs still run; the
sweep ends with a list of the failed jobs and exit status 1. See ``pcjax/app.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.app import train_main  # noqa: E402

if __name__ == "__main__":
    train_main()
