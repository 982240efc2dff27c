#!/usr/bin/env python
"""Build the results table and plots from run records (``pcjax table`` is the same); see ``pcjax/tables.py``.

    python experiments/tables.py RUN_DIRS... [--out FILE.md] [--plots-dir DIR] [--expect name1,name2]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcjax.tables import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
