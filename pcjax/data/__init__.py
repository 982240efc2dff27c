"""Datasets (read from their canonical distribution files) and the device-side input pipeline.

>>> from pcjax.data import load_dataset, split_validation
>>> ds = load_dataset("digits")
>>> train, (val_x, val_y) = split_validation(ds, 0.1, seed=0)
"""

from pcjax.data.dataset import (
    DATASETS,
    ArrayDataset,
    DatasetError,
    channel_stats,
    data_root,
    load_dataset,
    split_validation,
)
from pcjax.data.download import REGISTRY, DatasetSource, RemoteFile, fetch, verify_file
from pcjax.data.pipeline import (
    AugmentSpec,
    augment,
    augment_eval,
    center_crop,
    epoch_permutation,
    eval_batches,
    normalize,
    random_crop,
    random_crop_to,
    random_flip,
)

__all__ = [
    "DATASETS",
    "REGISTRY",
    "ArrayDataset",
    "AugmentSpec",
    "DatasetError",
    "DatasetSource",
    "RemoteFile",
    "augment",
    "augment_eval",
    "center_crop",
    "channel_stats",
    "data_root",
    "epoch_permutation",
    "eval_batches",
    "fetch",
    "load_dataset",
    "normalize",
    "random_crop",
    "random_crop_to",
    "random_flip",
    "split_validation",
    "verify_file",
]
