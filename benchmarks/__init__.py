"""Speed benchmarks of pcjax against a PyTorch eager reference and the PCX library (see README.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hwc_perm(shape: Sequence[int]) -> np.ndarray:
    """For a node of pcjax shape ``shape``: the NHWC-flat index of every NCHW-flat position.

    ``flat_nhwc[perm] == flat_nchw`` for the same image (channels-first libraries flatten C, H, W);
    vectors map to the identity.
    """
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    if len(shape) != 3:
        return np.arange(n)
    return np.arange(n).reshape(shape).transpose(2, 0, 1).ravel()
