"""Finite blow-ups: a run whose accuracy falls far below what it had reached, with every value finite.

Training stops on a non-finite step or one past ``trainer.divergence_threshold``; a network can also
blow up below that threshold (a relaxation that turns unstable: the mean training energy climbs by
orders of magnitude and the accuracy falls to chance) and train on to the end. Such a run is
``complete`` and its strict-protocol number (the test accuracy at the best validation epoch) is still
a real measurement, but the fall must not pass unseen: :func:`find_collapse` names the first epoch
whose held-out accuracy fell at least ``drop`` below the best before it, the trainer logs it and
keeps it in the record's ``summary.collapse``, and result tables flag the run. A run may recover
afterwards (it is flagged all the same: the fall happened).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: A fall of this much held-out accuracy (a fraction: 0.2 = 20 points) below the best earlier epoch.
DROP = 0.2
#: Accuracies are fractions of a finite test set: a fall within this of ``drop`` counts as ``drop``.
_ROUNDING = 1e-9


def _number(x: Any) -> float | None:
    """A finite number (not a bool), else None."""
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def _accuracies(epochs: Sequence[Mapping[str, Any]]) -> tuple[str, list[float | None]]:
    """The held-out accuracy per epoch: validation where every epoch records one (the rule the strict
    protocol uses to pick its epoch), else test; a non-finite value is skipped."""
    if epochs and all(e.get("val_acc") is not None for e in epochs):
        return "val_acc", [_number(e.get("val_acc")) for e in epochs]
    return "test_acc", [_number(e.get("test_acc")) for e in epochs]


def find_collapse(epochs: Sequence[Mapping[str, Any]], drop: float = DROP) -> dict | None:
    """The first epoch e with acc_e <= max_{k<e} acc_k - ``drop``, or None.

    Returns ``{"epoch", "best_epoch", "metric", "acc", "best_acc", "train_energy", "best_train_energy"}``:
    the epochs as the record numbers them (1-based), the energies the epochs' mean training energies
    (None where not recorded)."""
    if not drop > 0:
        raise ValueError(f"drop must be > 0 (a fraction of accuracy), got {drop}")
    metric, acc = _accuracies(epochs)
    best = None
    for i, a in enumerate(acc):
        if a is None:
            continue
        if best is not None and a <= acc[best] - drop + _ROUNDING:
            return {"epoch": _epoch_number(epochs, i), "best_epoch": _epoch_number(epochs, best), "metric": metric,
                    "acc": a, "best_acc": acc[best],
                    "train_energy": _number(epochs[i].get("train_energy")),
                    "best_train_energy": _number(epochs[best].get("train_energy"))}
        if best is None or a > acc[best]:
            best = i
    return None


def _epoch_number(epochs: Sequence[Mapping[str, Any]], i: int) -> int:
    n = epochs[i].get("epoch")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else i + 1


def describe_collapse(c: Mapping[str, Any]) -> str:
    """One sentence: where the accuracy fell, from what, and the training energy beside it."""
    name = "validation" if c["metric"] == "val_acc" else "test"
    text = (f"epoch {c['epoch']}: {name} accuracy {100 * c['acc']:.2f} %, down from {100 * c['best_acc']:.2f} % "
            f"at epoch {c['best_epoch']}")
    if c.get("train_energy") is not None and c.get("best_train_energy") is not None:
        text += f" (mean training energy {c['best_train_energy']:.3g} -> {c['train_energy']:.3g})"
    return text
