"""LPIPS (Zhang et al. 2018, the `lpips` package's v0.1 metric) in Flax, NHWC.

d(x0, x1) = sum_l mean_{h,w} w_l . (n(f_l(x0)) - n(f_l(x1)))^2, where f_l are five ReLU feature maps
of a backbone (AlexNet by default, VGG16 selectable), n normalises each pixel's feature vector to
unit L2 norm (eps 1e-10 added to the norm) and w_l >= 0 are the learned 1x1 linear heads `lin0..4`.
Inputs are images in [-1, 1], shifted and scaled per channel by the package's ScalingLayer first.

Parameter names (`ecgan_jax.convert.lpips` maps torchvision's `features.{i}` indices onto them):
  params/backbone/conv{1..5} (AlexNet) or conv{block}_{j} (VGG16), params/lin{0..4}/kernel
"""
from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

# lpips.pretrained_networks.ScalingLayer: (x - shift) / scale on [-1, 1] inputs.
SHIFT = (-.030, -.088, -.188)
SCALE = (.458, .448, .450)
EPS = 1e-10

# torchvision `features` index of each convolution, and the channels of the five LPIPS taps.
ALEXNET_CONVS = {'conv1': 0, 'conv2': 3, 'conv3': 6, 'conv4': 8, 'conv5': 10}
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG16_CONVS = dict(zip(
    [f'conv{b + 1}_{j + 1}' for b, block in enumerate(VGG16_BLOCKS) for j in range(len(block))],
    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))
CHANNELS = {'alex': (64, 192, 384, 256, 256), 'vgg': (64, 128, 256, 512, 512)}
NETS = tuple(CHANNELS)


def _conv(features: int, kernel: int, name: str, stride: int = 1, pad: int | None = None):
  p = kernel // 2 if pad is None else pad
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((p, p), (p, p)), name=name)


class AlexNetFeatures(nn.Module):
  """torchvision AlexNet `features` up to relu5: [B, H, W, 3] -> five ReLU maps (strides 4..16)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2), padding='VALID')  # noqa: E731
    r1 = nn.relu(_conv(64, 11, 'conv1', stride=4, pad=2)(x))
    r2 = nn.relu(_conv(192, 5, 'conv2')(pool(r1)))
    r3 = nn.relu(_conv(384, 3, 'conv3')(pool(r2)))
    r4 = nn.relu(_conv(256, 3, 'conv4')(r3))
    r5 = nn.relu(_conv(256, 3, 'conv5')(r4))
    return [r1, r2, r3, r4, r5]


class VGG16Features(nn.Module):
  """torchvision VGG16 `features` taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    outs = []
    for b, block in enumerate(VGG16_BLOCKS):
      if b:
        x = nn.max_pool(x, (2, 2), (2, 2), padding='VALID')
      for j, c in enumerate(block):
        x = nn.relu(_conv(c, 3, f'conv{b + 1}_{j + 1}')(x))
      outs.append(x)
    return outs


def normalize_features(x: jnp.ndarray) -> jnp.ndarray:
  """Per-pixel unit L2 norm over channels (lpips.normalize_tensor)."""
  return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + EPS)


class LPIPS(nn.Module):
  """(x0, x1) images [B, H, W, 3] in [-1, 1] -> distance float32 [B]."""
  net: str = 'alex'

  @nn.compact
  def __call__(self, x0: jnp.ndarray, x1: jnp.ndarray) -> jnp.ndarray:
    chex.assert_equal_shape([x0, x1])
    chex.assert_axis_dimension(x0, 3, 3)
    if self.net not in CHANNELS:
      raise ValueError(f'Unknown LPIPS backbone {self.net!r}: expected one of {list(NETS)}')
    backbone = (AlexNetFeatures if self.net == 'alex' else VGG16Features)(name='backbone')
    heads = [nn.Conv(1, (1, 1), use_bias=False, name=f'lin{i}') for i in range(5)]
    shift, scale = jnp.asarray(SHIFT), jnp.asarray(SCALE)
    f0 = backbone((x0.astype(jnp.float32) - shift) / scale)
    f1 = backbone((x1.astype(jnp.float32) - shift) / scale)
    total = jnp.zeros((x0.shape[0],), jnp.float32)
    for head, a, b in zip(heads, f0, f1):
      diff = jnp.square(normalize_features(a) - normalize_features(b))
      total = total + jnp.mean(head(diff), axis=(1, 2, 3))
    return total


def conv_names(net: str) -> Sequence[str]:
  return tuple(ALEXNET_CONVS if net == 'alex' else VGG16_CONVS)
