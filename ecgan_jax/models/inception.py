"""The FID Inception-v3 in Flax (NHWC): pytorch-fid's `FIDInceptionV3`, the network of TF's
2015-12-05 Inception graph that every published FID number uses, returning the 2048-d pool3 features.

It differs from torchvision's Inception-v3 in four places (all in pytorch-fid's `inception.py`):
the average pools of Mixed_5b..5d (InceptionA), Mixed_6b..6e (InceptionC) and Mixed_7b (InceptionE,
first) exclude the padding from the mean (count_include_pad=False), and Mixed_7c (InceptionE, second)
pools with a 3x3 max pool instead of an average pool. BatchNorm epsilon is 1e-3, every convolution
has no bias. Input images in [-1, 1] (pytorch-fid's normalised input) of any size are resized to
299x299 bilinearly (half-pixel centres, no antialiasing: torch's `F.interpolate(...,
mode='bilinear', align_corners=False)`).

Parameter names follow the PyTorch module names so `ecgan_jax.convert.inception` is a key rename:
  params/<Block>/<branch>/{conv/kernel, bn/{scale, bias}}, batch_stats/<Block>/<branch>/bn/{mean,var}
"""
from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3

Pad = tuple[tuple[int, int], tuple[int, int]]


def _pad(kernel: tuple[int, int]) -> Pad:
  """'Same' padding of an odd stride-1 kernel, as the PyTorch blocks write it."""
  return ((kernel[0] // 2, kernel[0] // 2), (kernel[1] // 2, kernel[1] // 2))


class BasicConv(nn.Module):
  """Conv (no bias) + BatchNorm(eps 1e-3, running statistics) + ReLU."""
  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Pad | str = 'VALID'

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.Conv(self.features, self.kernel, self.strides, padding=self.padding, use_bias=False,
                name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name='bn')(x)
    return nn.relu(x)


def _same(features: int, kernel: tuple[int, int], name: str) -> BasicConv:
  return BasicConv(features, kernel, padding=_pad(kernel), name=name)


def _avg_pool_3x3(x: jnp.ndarray) -> jnp.ndarray:
  """3x3 stride-1 average pool, padding excluded from the mean (FID blocks)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  return nn.max_pool(x, (3, 3), (2, 2), padding='VALID')


class InceptionA(nn.Module):
  """Mixed_5b..5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (64 + 64 + 96 + pool_features)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _same(64, (1, 1), 'branch1x1')(x)
    b5 = _same(64, (5, 5), 'branch5x5_2')(_same(48, (1, 1), 'branch5x5_1')(x))
    b3 = _same(64, (1, 1), 'branch3x3dbl_1')(x)
    b3 = _same(96, (3, 3), 'branch3x3dbl_3')(_same(96, (3, 3), 'branch3x3dbl_2')(b3))
    bp = _same(self.pool_features, (1, 1), 'branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a (stride 2): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 (384 + 96 + C_in)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), (2, 2), name='branch3x3')(x)
    bd = _same(96, (3, 3), 'branch3x3dbl_2')(_same(64, (1, 1), 'branch3x3dbl_1')(x))
    bd = BasicConv(96, (3, 3), (2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e: factorised 7x7 branches with c7 channels; 4 x 192 outputs."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = _same(192, (1, 1), 'branch1x1')(x)
    b7 = _same(c7, (1, 1), 'branch7x7_1')(x)
    b7 = _same(192, (7, 1), 'branch7x7_3')(_same(c7, (1, 7), 'branch7x7_2')(b7))
    bd = _same(c7, (1, 1), 'branch7x7dbl_1')(x)
    bd = _same(c7, (1, 7), 'branch7x7dbl_3')(_same(c7, (7, 1), 'branch7x7dbl_2')(bd))
    bd = _same(192, (1, 7), 'branch7x7dbl_5')(_same(c7, (7, 1), 'branch7x7dbl_4')(bd))
    bp = _same(192, (1, 1), 'branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a (stride 2): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 (320 + 192 + C_in)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(320, (3, 3), (2, 2), name='branch3x3_2')(_same(192, (1, 1), 'branch3x3_1')(x))
    b7 = _same(192, (1, 1), 'branch7x7x3_1')(x)
    b7 = _same(192, (7, 1), 'branch7x7x3_3')(_same(192, (1, 7), 'branch7x7x3_2')(b7))
    b7 = BasicConv(192, (3, 3), (2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b / 7c: 320 + 2x384 + 2x384 + 192 = 2048 channels. `max_pool`: Mixed_7c's pool branch
  (pytorch-fid's FIDInceptionE_2); otherwise an average pool without padding (FIDInceptionE_1)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    b1 = _same(320, (1, 1), 'branch1x1')(x)
    b3 = _same(384, (1, 1), 'branch3x3_1')(x)
    b3 = jnp.concatenate([_same(384, (1, 3), 'branch3x3_2a')(b3),
                          _same(384, (3, 1), 'branch3x3_2b')(b3)], axis=-1)
    bd = _same(384, (3, 3), 'branch3x3dbl_2')(_same(448, (1, 1), 'branch3x3dbl_1')(x))
    bd = jnp.concatenate([_same(384, (1, 3), 'branch3x3dbl_3a')(bd),
                          _same(384, (3, 1), 'branch3x3dbl_3b')(bd)], axis=-1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = _same(192, (1, 1), 'branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(images: jnp.ndarray, size: int = INPUT_SIZE) -> jnp.ndarray:
  """[B, H, W, C] -> [B, size, size, C], torch's bilinear with align_corners=False, no antialias."""
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), 'bilinear', antialias=False)


class FIDInceptionV3(nn.Module):
  """images float [B, H, W, 3] in [-1, 1] -> pool3 features float32 [B, 2048]."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    chex.assert_rank(images, 4)
    chex.assert_axis_dimension(images, 3, 3)
    x = resize_bilinear(images.astype(jnp.float32)).astype(self.dtype)
    x = BasicConv(32, (3, 3), (2, 2), name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=((1, 1), (1, 1)), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    chex.assert_shape(features, (images.shape[0], FEATURE_DIM))
    return features


BLOCK_NAMES: Sequence[str] = (
    'Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3',
    'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e',
    'Mixed_7a', 'Mixed_7b', 'Mixed_7c')
