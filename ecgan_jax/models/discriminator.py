"""Multi-scale PatchGAN discriminator (SPADE/pix2pixHD), shared by both modalities (image, edge).

Input: the semantic map and an image (or edge map) concatenated on channels. Each scale is an
n-layer PatchGAN (kernel 4, padding 2, LeakyReLU 0.2; middle layers spectral-normalised and
instance-normalised, as SPADE's norm_D='spectralinstance'); between scales the input is average-
pooled (3x3, stride 2, padding 1, padded cells not counted). All intermediate features are
returned for the feature-matching loss. NHWC throughout.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax import configuration
from ecgan_jax.models.layers import (Conv, ParamFreeNorm, avg_pool_exclude_pad, leaky_relu,
                                     to_dtype, use_spectral)

Dtype = Any


class NLayerDiscriminator(nn.Module):
  """PatchGAN: x [B, H, W, Cin] -> list of n_layers + 1 feature maps, the last the logits
  [B, h, w, 1]. Widths ndf * 2**i capped at 512; strides 2 except the last two layers (1).
  onehot / stopped (start, n): data channels of x for the first conv (`Conv`)."""
  ndf: int = 64
  n_layers: int = 4
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32
  onehot: tuple[int, int] | None = None
  stopped: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> list[jax.Array]:
    outs = []
    nf = self.ndf
    x = Conv(nf, 4, strides=2, padding=2, spectral=use_spectral(self.spectral_norm, False),
             dtype=self.dtype, onehot=self.onehot, stopped=self.stopped, name='conv_0')(x, train)
    x = leaky_relu(x)
    outs.append(x)
    for n in range(1, self.n_layers):
      nf = min(nf * 2, 512)
      stride = 1 if n == self.n_layers - 1 else 2
      # No bias: the instance norm right after it would remove it (as SPADE does).
      x = Conv(nf, 4, strides=stride, padding=2, use_bias=False,
               spectral=use_spectral(self.spectral_norm, True), dtype=self.dtype,
               name=f'conv_{n}')(x, train)
      x = leaky_relu(ParamFreeNorm('instance', name=f'norm_{n}')(x, train))
      outs.append(x)
    x = Conv(1, 4, strides=1, padding=2, spectral=use_spectral(self.spectral_norm, False),
             dtype=self.dtype, name=f'conv_{self.n_layers}')(x, train)
    outs.append(x)
    return [o.astype(jnp.float32) for o in outs]


class MultiscaleDiscriminator(nn.Module):
  """D: (semantics [B, H, W, Cs], image [B, H, W, 3 or 1]) -> num_D lists of features.

  A 1-channel input (a real edge map) is broadcast to 3 channels, so real edges [B, H, W, 1] and
  generated edges I'_e [B, H, W, 3] go through the same first layer. `axis_name` is kept for the
  common builder signature; D has no batch statistics to sync (instance norm only).
  onehot_classes = n > 0: the first n semantic channels are one-hot and the label map is data (no
  gradient to it): the full-resolution scale's first conv gathers kernel rows for the classes
  (`Conv.onehot`), the pooled scales convolve the pooled map apart from the image
  (`Conv.stopped`), so backward passes compute input gradients for the image channels only.
  """
  ndf: int = 64
  n_layers: int = 4
  num_D: int = 2
  spectral_norm: str = 'reference'
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  onehot_classes: int = 0

  @nn.compact
  def __call__(self, semantics: jax.Array, image: jax.Array, *, train: bool
               ) -> list[list[jax.Array]]:
    chex.assert_rank([semantics, image], 4)
    chex.assert_equal_shape_prefix([semantics, image], 3)
    if image.shape[-1] == 1:
      image = jnp.broadcast_to(image, (*image.shape[:3], 3))
    chex.assert_shape(image, (*semantics.shape[:3], 3))
    sem, image = semantics.astype(jnp.float32), image.astype(jnp.float32)
    if self.onehot_classes:  # the label map is data: pooled and convolved without gradients
      sem = jax.lax.stop_gradient(sem)
    results = []
    for i in range(self.num_D):
      x = jnp.concatenate([sem, image], axis=-1).astype(self.dtype)
      onehot = stopped = None
      if self.onehot_classes:
        onehot, stopped = ((0, self.onehot_classes), None) if i == 0 else (None, (0, sem.shape[-1]))
      results.append(NLayerDiscriminator(self.ndf, self.n_layers, self.spectral_norm, self.dtype,
                                         onehot, stopped, name=f'discriminator_{i}')(x, train))
      if i + 1 < self.num_D:
        sem, image = avg_pool_exclude_pad(sem), avg_pool_exclude_pad(image)
    return results


def build_discriminator(config: Any, axis_name: str | None = None) -> MultiscaleDiscriminator:
  """MultiscaleDiscriminator from a config (`configuration.validate_config`'d by the caller)."""
  m = config.model
  return MultiscaleDiscriminator(ndf=int(m.ndf), n_layers=int(m.n_layers_D), num_D=int(m.num_D),
                                 spectral_norm=m.spectral_norm, axis_name=axis_name,
                                 dtype=to_dtype(m.dtype),
                                 onehot_classes=(configuration.num_classes(config)
                                                 if m.onehot_gather else 0))
