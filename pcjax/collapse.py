"""Finite blow-ups: a run whose accuracy falls far below what it had reached, with every value finite.

Training stops on a non-finite step or one past ``trainer.divergence_threshold``; a network can also
blow up below that threshold (a relaxation that turns unstable: the mean training energy climbs by
orders of magnitude and the accuracy falls to chance) and train on to the end. Such a run is
``complete`` and its strict-protocol number (the test accuracy at the best validation epoch) is still
a real measurement, but the collapse must not pass unseen: :func:`find_collapse` names the first
epoch whose held-out accuracy fell at least ``drop`` below the best before it, the trainer logs it
and keeps it in the record's ``summary.collapse``, and result tables flag the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: A fall of this much held-out accuracy (a fraction: 0.2 = 20 points) below the best earlier epoch.
DROP = 0.2


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _accuracies(epochs: Sequence[Mapping[str, Any]]) -> tuple[str, list[float | None]]:
    """The held-out accuracy per epoch: validation where every epoch has one, else test."""
    val = [_number(e.get("val_acc")) for e in epochs]
    if epochs and all(v is not None for v in val):
        return "val_acc", val
    return "test_acc", [_number(e.get("test_acc")) for e in epochs]


def find_collapse(epochs: Sequence[Mapping[str, Any]], drop: float = DROP) -> dict | None:
    """The first epoch e (1-based) with acc_e <= max_{k<e} acc_k - ``drop``, or None.

    Returns ``{"epoch", "best_epoch", "metric", "acc", "best_acc", "train_energy", "best_train_energy"}``
    (the energies are the epochs' mean training energies, None where not recorded)."""
    if not drop > 0:
        raise ValueError(f"drop must be > 0 (a fraction of accuracy), got {drop}")
    metric, acc = _accuracies(epochs)
    best = None
    for i, a in enumerate(acc):
        if a is None:
            continue
        if best is not None and a <= acc[best] - drop:
            return {"epoch": i + 1, "best_epoch": best + 1, "metric": metric, "acc": a, "best_acc": acc[best],
                    "train_energy": _number(epochs[i].get("train_energy")),
                    "best_train_energy": _number(epochs[best].get("train_energy"))}
        if best is None or a > acc[best]:
            best = i
    return None


def describe_collapse(c: Mapping[str, Any]) -> str:
    """One sentence: where the accuracy fell, from what, and the training energy beside it."""
    name = "validation" if c["metric"] == "val_acc" else "test"
    text = (f"epoch {c['epoch']}: {name} accuracy {100 * c['acc']:.2f} %, down from {100 * c['best_acc']:.2f} % "
            f"at epoch {c['best_epoch']}")
    if c.get("train_energy") is not None and c.get("best_train_energy") is not None:
        text += f" (mean training energy {c['best_train_energy']:.3g} -> {c['train_energy']:.3g})"
    return text + ": a finite blow-up"
