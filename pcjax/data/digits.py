"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 real 8x8 images.

Needs no network and no data root. Pixel values 0..16 are mapped to uint8 by
``round(v * 255 / 16)``. Split: a fixed permutation ``np.random.default_rng(0).permutation(1797)``;
its first ``floor(0.8 * 1797) = 1437`` entries form the train set and the last 360 the test set.
Mean/std are computed from the train split.
"""

from __future__ import annotations

import numpy as np

from pcjax.data.dataset import ArrayDataset, channel_stats, take_first

__all__ = ["load_digits", "DIGITS_SPLIT_SEED", "DIGITS_TRAIN_FRACTION"]

DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_FRACTION = 0.8


def load_digits(*, limit_train: int | None = None, limit_test: int | None = None) -> ArrayDataset:
    """Load the 8x8 digits as an :class:`ArrayDataset` of shape ``(N, 8, 8, 1)`` with 10 classes."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.rint(np.asarray(bunch.images, np.float64) * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target, np.int32)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_train = int(DIGITS_TRAIN_FRACTION * len(labels))
    tr, te = perm[:n_train], perm[n_train:]
    mean, std = channel_stats(images[tr])
    train_x, train_y = take_first(images[tr], labels[tr], limit_train)
    test_x, test_y = take_first(images[te], labels[te], limit_test)
    return ArrayDataset("digits", train_x, train_y, test_x, test_y, 10, mean, std,
                        tuple(str(i) for i in range(10)))
