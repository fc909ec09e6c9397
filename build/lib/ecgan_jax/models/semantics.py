"""Semantic inputs of the networks: one-hot label maps and PyTorch-compatible nearest resizing.

All arrays are NHWC. Label maps are integer class ids [B, H, W]; the don't-care class (if any) is
already mapped to id `label_nc` by the data pipeline.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np


def one_hot_semantics(label: jax.Array, num_classes: int,
                      instance: jax.Array | None = None) -> jax.Array:
  """Label map [B, H, W] int -> generator/discriminator input [B, H, W, semantic_nc] float32.

  semantic_nc = num_classes, plus one channel when an instance-boundary map [B, H, W, 1] in {0, 1}
  is given (SPADE appends it after the one-hot classes).
  """
  chex.assert_rank(label, 3)
  sem = jax.nn.one_hot(label, num_classes, dtype=jnp.float32)
  if instance is not None:
    chex.assert_shape(instance, (*label.shape, 1))
    sem = jnp.concatenate([sem, instance.astype(jnp.float32)], axis=-1)
  return sem


def nearest_indices(size_in: int, size_out: int) -> np.ndarray:
  """Source indices of PyTorch's `F.interpolate(mode='nearest')`: floor(i * in / out)."""
  idx = np.floor(np.arange(size_out) * (size_in / size_out)).astype(np.int32)
  return np.minimum(idx, size_in - 1)


def resize_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes [B, H, W, ...] to [B, h, w, ...] with PyTorch-nearest semantics.

  For an integer downsampling factor f this is striding, x[:, ::f, ::f]: no averaging, so class
  ids and one-hot maps stay exact. Indices are static (numpy), so it is safe inside jit.
  """
  h_in, w_in = x.shape[1], x.shape[2]
  h, w = size
  if (h, w) == (h_in, w_in):
    return x
  if h_in % h == 0 and w_in % w == 0:
    return x[:, ::h_in // h, ::w_in // w]
  x = jnp.take(x, nearest_indices(h_in, h), axis=1)
  return jnp.take(x, nearest_indices(w_in, w), axis=2)
