"""VGG19 feature extractor for the perceptual loss (SPADE/pix2pixHD slices relu1_1 .. relu5_1).

Only the 13 convolutions up to conv5_1 are built: the perceptual loss never reads deeper layers, so
their weights (torchvision `features.30` .. `features.34` and the classifier) are not kept. Parameter
names follow the VGG paper (`conv{block}_{index}`); `ecgan_jax.convert.vgg19` maps torchvision's
`features.{i}` indices onto them.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp

# ImageNet statistics of torchvision's pretrained models (RGB, images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19 blocks: output channels of each 3x3 convolution, a 2x2 max pool after every block.
VGG19_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
# The returned features: the ReLU after the first convolution of each block.
FEATURE_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1')


def conv_names() -> tuple[str, ...]:
  """Names of the convolutions this module builds, in order: conv1_1 .. conv5_1 (13 layers)."""
  names = [f'conv{b + 1}_{i + 1}' for b, block in enumerate(VGG19_BLOCKS) for i in range(len(block))]
  return tuple(names[:names.index('conv5_1') + 1])


def imagenet_normalize(x: jnp.ndarray) -> jnp.ndarray:
  """Maps images in [-1, 1] ([..., 3] RGB) to torchvision's ImageNet normalisation."""
  chex.assert_axis_dimension(x, -1, 3)
  mean = jnp.asarray(IMAGENET_MEAN, x.dtype)
  std = jnp.asarray(IMAGENET_STD, x.dtype)
  return ((x + 1.0) * 0.5 - mean) / std


class VGG19(nn.Module):
  """VGG19 trunk returning (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1).

  Input: x [B, H, W, 3], ImageNet-normalised (see `imagenet_normalize`), or images in [-1, 1] when
  `normalize_input` is True (as the perceptual loss builds it). Outputs have shapes
  [B, H/2^k, W/2^k, C_k] for k = 0..4 and C = 64, 128, 256, 512, 512 (floor division, as torch's
  max pool). `dtype` is the compute dtype; parameters stay float32.
  """
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  normalize_input: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, -1, 3)
    if self.normalize_input:
      x = imagenet_normalize(x)
    x = x.astype(self.dtype)
    features = []
    for b, block in enumerate(VGG19_BLOCKS):
      if b > 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
      for i, channels in enumerate(block):
        x = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    param_dtype=self.param_dtype, name=f'conv{b + 1}_{i + 1}')(x)
        x = nn.relu(x)
        if i == 0:
          features.append(x)
          if b == len(VGG19_BLOCKS) - 1:
            return tuple(features)
    raise AssertionError('unreachable: relu5_1 ends the trunk')
