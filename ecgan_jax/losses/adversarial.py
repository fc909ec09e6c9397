"""Adversarial losses for the multi-scale discriminator (Eqs. 7-8), discriminator feature matching
and the VAE KL term, with the SPADE/pix2pixHD reductions.

Discriminator outputs follow the `MultiscaleDiscriminator` contract: a list over scales, each a
list of feature maps whose last entry is the patch logits [B, h, w, 1]. A bare array per scale is
read as the logits.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ecgan_jax.configuration import GAN_MODES

Array = jax.Array


def _logits(scale: Array | Sequence[Array]) -> Array:
  return scale[-1] if isinstance(scale, (list, tuple)) else scale


def gan_loss(predictions: Sequence[Array | Sequence[Array]], target_is_real: bool, *,
             for_discriminator: bool = True, mode: str = 'hinge') -> Array:
  """Adversarial loss averaged over all logits of a scale, then over the scales.

  With x the logits of one scale:
    hinge (default, SPADE code): D real mean(relu(1 - x)), D fake mean(relu(1 + x)); G -mean(x).
    original (the paper's log-loss, Eqs. 7-8, with G's non-saturating form): real/G
      mean(softplus(-x)) = -mean(log sigmoid(x)); fake mean(softplus(x)) =
      -mean(log(1 - sigmoid(x))).
    ls (LSGAN): mean((x - t)^2) with t = 1 for real/G, 0 for fake.
  The generator side (`for_discriminator=False`) requires target_is_real=True.
  Eq. 8's (lambda + 1) and lambda weights are applied by the caller. float32 scalar.
  """
  if mode not in GAN_MODES:
    raise ValueError(f'gan mode {mode!r} is not one of {list(GAN_MODES)}')
  if not for_discriminator and not target_is_real:
    raise ValueError('the generator loss is computed with target_is_real=True')
  if not predictions:
    raise ValueError('gan_loss got no discriminator outputs')
  total = jnp.float32(0.0)
  for scale in predictions:
    x = _logits(scale).astype(jnp.float32)
    if mode == 'hinge':
      if for_discriminator:
        loss = jax.nn.relu(1.0 - x) if target_is_real else jax.nn.relu(1.0 + x)
      else:
        loss = -x
    elif mode == 'original':
      loss = jax.nn.softplus(-x) if target_is_real else jax.nn.softplus(x)
    else:
      loss = jnp.square(x - (1.0 if target_is_real else 0.0))
    total += jnp.mean(loss)
  return total / len(predictions)


def feature_matching_loss(fake: Sequence[Sequence[Array]],
                          real: Sequence[Sequence[Array]]) -> Array:
  """Discriminator feature matching (pix2pixHD/SPADE): for each scale, the sum over intermediate
  feature maps (all but the last, the logits) of mean |f_fake - stop_gradient(f_real)|, then
  averaged over the scales (SPADE divides by num_D). Multiply by lambda_f outside. float32 scalar.
  """
  if len(fake) != len(real) or not fake:
    raise ValueError(f'feature matching needs the same number of scales, got {len(fake)} and '
                     f'{len(real)}')
  total = jnp.float32(0.0)
  for f_scale, r_scale in zip(fake, real):
    if len(f_scale) != len(r_scale):
      raise ValueError(f'a scale has {len(f_scale)} fake and {len(r_scale)} real feature maps')
    for f, r in zip(f_scale[:-1], r_scale[:-1]):
      if f.shape != r.shape:
        raise ValueError(f'feature shapes differ: {f.shape} vs {r.shape}')
      r = jax.lax.stop_gradient(r).astype(jnp.float32)
      total += jnp.mean(jnp.abs(f.astype(jnp.float32) - r))
  return total / len(fake)


def kl_divergence(mu: Array, logvar: Array, *, reduction: str = 'batch_mean') -> Array:
  """KL(N(mu, exp(logvar)) || N(0, 1)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar)).

  mu, logvar: [B, z_dim]. reduction 'batch_mean' sums over z_dim and averages over the batch (so
  the value does not depend on the per-device batch); 'sum' sums over everything, as SPADE's
  KLDLoss does. float32 scalar (nats).
  """
  if mu.shape != logvar.shape or mu.ndim != 2:
    raise ValueError(f'mu and logvar must both be [B, z_dim]; got {mu.shape} and {logvar.shape}')
  mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  kl = -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), axis=-1)
  if reduction == 'batch_mean':
    return jnp.mean(kl)
  if reduction == 'sum':
    return jnp.sum(kl)
  raise ValueError(f"reduction must be 'batch_mean' or 'sum', got {reduction!r}")
