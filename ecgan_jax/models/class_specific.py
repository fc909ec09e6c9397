"""G_c, class-specific pixel generation for every present class, at the cost of one decoder pass.

The paper runs one decoder per class on the class-masked features F * m_c and sums the masked
outputs into I_g. With a shared decoder, that sum equals ONE pass of a segment-aware decoder: a
3x3 convolution that mixes only pixels of the same class (neighbours of another class count as
zero, exactly what the masked input of the per-class decoder holds), re-masked after each layer.
So every class is generated, small ones included, and the cost does not depend on the number of
classes N: the decoder reads the label map as int ids [B, H, W], never as N masks.

  segment_ids(semantics, num_classes, ignore_label) -> int32 [B, H, W] (-1: no class)
  layers.SegmentConv    3x3 conv within segments
  ClassSpecificDecoder  F [B, H, W, C], ids [B, H, W] -> I_g [B, H, W, 3]
  ClassFusion       learned per-pixel weighting of I'' and I_g (LGGAN-style)
"""
from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax.models.layers import Conv, SegmentConv, leaky_relu, use_spectral

Dtype = Any


def segment_ids(semantics: jax.Array, num_classes: int,
                ignore_label: int | None = None) -> jax.Array:
  """One-hot semantics [B, H, W, >= N] -> class id per pixel int32 [B, H, W]; -1 where no class
  is set and at the don't-care class (those pixels belong to no class-specific decoder)."""
  onehot = semantics[..., :num_classes]
  ids = jnp.argmax(onehot, axis=-1).astype(jnp.int32)
  ids = jnp.where(jnp.max(onehot, axis=-1) > 0, ids, -1)
  if ignore_label is not None:
    ids = jnp.where(ids == ignore_label, -1, ids)
  return ids


class ClassSpecificDecoder(nn.Module):
  """G_c for every class: F [B, H, W, C], ids int [B, H, W] (-1 = no class) -> I_g [B, H, W, 3].

  x_0 = F * inside; x_{j+1} = SegmentConv(lrelu(x_j)) * inside; I_g = tanh(SegmentConv(lrelu(x_n)))
  * inside, inside = [ids >= 0]. Equal to sum_c m_c * decoder(F * m_c) with a per-class decoder
  re-masked to m_c after each layer (tests/models/test_class_specific.py).
  """
  widths: Sequence[int] = (32, 16)
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, f: jax.Array, ids: jax.Array, train: bool) -> jax.Array:
    chex.assert_shape(ids, f.shape[:3])
    sn = use_spectral(self.spectral_norm, False)
    inside = (ids >= 0)[..., None]
    x = jnp.where(inside, f, 0).astype(self.dtype)
    for j, width in enumerate(self.widths):
      x = SegmentConv(width, spectral=sn, dtype=self.dtype, name=f'conv_{j}')(
          leaky_relu(x), ids, train)
      x = jnp.where(inside, x, 0)
    x = SegmentConv(3, spectral=sn, dtype=self.dtype, name='conv_out')(leaky_relu(x), ids, train)
    return jnp.where(inside, jnp.tanh(x.astype(jnp.float32)), 0.0)


class ClassFusion(nn.Module):
  """LGGAN-style fusion: per-pixel softmax weights from [F, I'', I_g] mix the two images.

  f [B, H, W, C], image I'' and class_image I_g [B, H, W, 3] in [-1, 1] -> w_0 I'' + w_1 I_g
  (a convex combination, so still in [-1, 1]); (w_0, w_1) = softmax(conv3x3(lrelu([F, I'', I_g]))).
  """
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, f: jax.Array, image: jax.Array, class_image: jax.Array, train: bool
               ) -> jax.Array:
    sn = use_spectral(self.spectral_norm, False)
    x = jnp.concatenate([f, image.astype(f.dtype), class_image.astype(f.dtype)], axis=-1)
    logits = Conv(2, 3, spectral=sn, dtype=self.dtype, name='conv_weights')(leaky_relu(x), train)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return weights[..., :1] * image + weights[..., 1:] * class_image
