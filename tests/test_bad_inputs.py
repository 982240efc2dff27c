"""Bad inputs: labels outside the classes are rejected."""

import numpy as np
import pytest

import pcjax as pj


# ---------------------------------------------------------------------------- labels in range
@pytest.mark.parametrize("split,labels,bad", [("train", [0, 1, 12, 3, 12], "12"), ("test", [0, -1, 2, 1], "-1")])
def test_array_dataset_rejects_labels_outside_the_classes(split, labels, bad):
    from pcjax.data import ArrayDataset
    from pcjax.data.dataset import LabelError

    y = np.asarray(labels, np.int32)
    good = np.zeros(len(labels), np.int32)
    x = np.zeros((len(labels), 2, 2, 1), np.uint8)
    ys = {"train_y": y, "test_y": good} if split == "train" else {"train_y": good, "test_y": y}
    with pytest.raises(LabelError) as err:
        ArrayDataset("toy", x, ys["train_y"], x, ys["test_y"], 10, (0.5,), (0.2,), tuple(map(str, range(10))))
    msg = str(err.value)
    n_bad = sum(1 for v in labels if not 0 <= v < 10)
    assert f"{n_bad} of the {len(labels)} {split} labels" in msg and f"first bad value {bad}" in msg
    assert "[0, 10)" in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, pj.PCJaxError)
