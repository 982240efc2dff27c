"""A small, deterministic and learnable image classification set for tests.

Each class ``c`` has a prototype image ``P_c`` with pixels drawn uniformly from ``[0, 1]``; an
example of class ``c`` is ``clip(P_c + noise * N(0, 1), 0, 1)`` rendered to uint8 by
``round(255 * v)``. Classes are balanced (label ``i % num_classes`` before shuffling), so a linear
classifier separates them easily when ``noise`` is moderate.
"""

from __future__ import annotations

import numpy as np

from pcjax.data.dataset import ArrayDataset, channel_stats, take_first

__all__ = ["load_synthetic"]


def _sample(rng: np.random.Generator, protos: np.ndarray, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    k = protos.shape[0]
    y = rng.permutation(np.arange(n) % k).astype(np.int32)
    v = protos[y] + noise * rng.standard_normal((n,) + protos.shape[1:])
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8), y


def load_synthetic(*, image_shape: tuple[int, int, int] = (8, 8, 1), num_classes: int = 10,
                   n_train: int = 1000, n_test: int = 200, noise: float = 0.25, seed: int = 0,
                   limit_train: int | None = None, limit_test: int | None = None) -> ArrayDataset:
    """Class-conditional Gaussian blobs around random prototype images (see the module docstring).

    The same arguments always give the same arrays. Mean/std come from the train split.
    """
    if num_classes < 2 or n_train < 1 or n_test < 0 or len(image_shape) != 3:
        raise ValueError("need num_classes >= 2, n_train >= 1, n_test >= 0 and image_shape=(H, W, C)")
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0.0, 1.0, (num_classes,) + tuple(int(s) for s in image_shape))
    train_x, train_y = _sample(rng, protos, n_train, noise)
    test_x, test_y = _sample(rng, protos, n_test, noise)
    mean, std = channel_stats(train_x)
    train_x, train_y = take_first(train_x, train_y, limit_train)
    test_x, test_y = take_first(test_x, test_y, limit_test)
    return ArrayDataset("synthetic", train_x, train_y, test_x, test_y, num_classes, mean, std,
                        tuple(f"class_{i}" for i in range(num_classes)))
