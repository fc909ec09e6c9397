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
  return perceptual_losses(vgg_fn, [(x, y)], weights=weights)[0]


def perceptual_losses(vgg_fn: Callable[[Array], Sequence[Array]],
                      pairs: Sequence[tuple[Array, Array]], *,
                      weights: Sequence[float] = VGG_WEIGHTS) -> list[Array]:
  """`perceptual_loss(vgg_fn, x, y)` for each (x, y) of `pairs`, from ONE call of `vgg_fn` on
  every x and every distinct y stacked on the batch axis (a target passed as the same array
  object for several x is run once). Equal to the separate losses up to float summation order
  (vgg_fn must treat batch elements independently, as VGG19 in eval mode does); fewer, larger
  convolutions and one network to compile instead of len(pairs).

  Args:
    vgg_fn: as for `perceptual_loss`.
    pairs: (x generated [B, H, W, 3], y target of the same shape) pairs, all of one shape.
    weights: one per feature.
  Returns:
    a list of float32 scalars, one per pair.
  """
  if not pairs:
    raise ValueError('perceptual_losses needs at least one (x, y) pair')
  targets: list[Array] = []
  index = []  # pair -> position of its target in `targets`
  for x, y in pairs:
    if x.shape != y.shape or x.ndim != 4:
      raise ValueError(f'x and y must be [B, H, W, C] of one shape; got {x.shape} and {y.shape}')
    if x.shape != pairs[0][0].shape:
      raise ValueError(f'all pairs must have one shape; got {x.shape} and {pairs[0][0].shape}')
    position = next((i for i, t in enumerate(targets) if t is y), None)
    if position is None:
      position = len(targets)
      targets.append(y)
    index.append(position)
  b, n = pairs[0][0].shape[0], len(pairs)
  stacked = [x for x, _ in pairs] + [jax.lax.stop_gradient(y) for y in targets]
  feats = vgg_fn(jnp.concatenate(stacked, axis=0))
  if len(feats) != len(weights):
    raise ValueError(f'vgg_fn returned {len(feats)} features for {len(weights)} weights')
  totals = [jnp.float32(0.0)] * n
  for w, f in zip(weights, feats):
    f = f.astype(jnp.float32)
    for i in range(n):
      fx = f[i * b:(i + 1) * b]
      fy = jax.lax.stop_gradient(f[(n + index[i]) * b:(n + index[i] + 1) * b])
      totals[i] = totals[i] + w * jnp.mean(jnp.abs(fx - fy))
  return totals
