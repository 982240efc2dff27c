"""A small convnet for MNIST-sized inputs (the row-3 model of the reproduction study).

conv3x3(32)+act+maxpool / conv3x3(64)+act+maxpool / conv3x3(128)+act+maxpool / linear(classes):
latents (14,14,32), (7,7,64), (3,3,128), (classes,) for 28x28 inputs. ``skip="long"`` adds a learned
linear skip edge from node 3 into the output prediction; ``backward`` adds top-down predictors.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import PRNGKeyArray

from ..network import Network
from .vgg import vgg

SMALL_CNN = ((32, 1, True), (64, 1, True), (128, 1, True))


def small_cnn(input_shape: Sequence[int], num_classes: int, *, act: str = "gelu", width_multiplier: float = 1.0,
              skip: str = "none", backward: str = "none", backward_from: int = 1, key: PRNGKeyArray) -> Network:
    """Three conv3x3 blocks (32, 64, 128 channels, each + act + max-pool 2) and a linear output."""
    return vgg(input_shape, num_classes, SMALL_CNN, act=act, width_multiplier=width_multiplier, skip=skip,
               backward=backward, backward_from=backward_from, key=key)
