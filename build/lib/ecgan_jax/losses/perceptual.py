"""VGG19 perceptual loss L_p of Eq. 9 (pix2pixHD/SPADE weighting)."""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

# Weights of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (pix2pixHD / SPADE VGGLoss).
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def perceptual_loss(vgg_fn: Callable[[Array], Sequence[Array]], x: Array, y: Array, *,
                    weights: Sequence[float] = VGG_WEIGHTS) -> Array:
  """sum_l w_l mean |phi_l(x) - stop_gradient(phi_l(y))|.

  Args:
    vgg_fn: maps images [B, H, W, 3] in [-1, 1] to the five VGG19 features (relu1_1 .. relu5_1),
      e.g. `lambda im: vgg.apply(params, imagenet_normalize(im))`. Called once on [x; y].
    x: generated images [B, H, W, 3] in [-1, 1] (gradients flow here).
    y: target images, same shape (stopped: no gradient).
    weights: one per feature (default 1/32, 1/16, 1/8, 1/4, 1).
  Returns:
    float32 scalar (mean absolute feature difference, weighted sum over layers).
  """
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f'x and y must be [B, H, W, C] of one shape; got {x.shape} and {y.shape}')
  b = x.shape[0]
  feats = vgg_fn(jnp.concatenate([x, jax.lax.stop_gradient(y)], axis=0))
  if len(feats) != len(weights):
    raise ValueError(f'vgg_fn returned {len(feats)} features for {len(weights)} weights')
  total = jnp.float32(0.0)
  for w, f in zip(weights, feats):
    f = f.astype(jnp.float32)
    total += w * jnp.mean(jnp.abs(f[:b] - jax.lax.stop_gradient(f[b:])))
  return total
