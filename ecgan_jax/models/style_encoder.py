"""VAE style encoder (SPADE's ConvEncoder) for multi-modal synthesis (config.model.multimodal='vae').

image [B, H, W, 3] in [-1, 1] -> (mu, logvar) [B, z_dim]. Non-square inputs are resized (bilinear,
no antialias, like F.interpolate) to a square of the shorter side, as SPADE resizes to 256x256.
Stride-2 3x3 convs (spectral norm + instance norm, LeakyReLU 0.2) halve the side down to about 4
pixels: ngf x (1, 2, 4, 8, 8, 8) for a 256-pixel input, exactly SPADE's six layers; then two linear
heads on the flattened [4, 4, 8 ngf] map.
"""
from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax.models.layers import Conv, Dense, ParamFreeNorm, leaky_relu, to_dtype, use_spectral

Dtype = Any


def encoder_layers(side: int) -> int:
  """Number of stride-2 layers that take a `side`-pixel square down to about 4 pixels (>= 1)."""
  return max(1, int(math.floor(math.log2(max(side, 8) / 4))))


class StyleEncoder(nn.Module):
  """E_style: image [B, H, W, 3] -> (mu, logvar), each [B, z_dim] float32."""
  ngf: int = 64
  z_dim: int = 256
  spectral_norm: str = 'reference'
  axis_name: str | None = None  # kept for the common builder signature (instance norm only)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    chex.assert_rank(image, 4)
    b, h, w, _ = image.shape
    side = min(h, w)
    x = image.astype(jnp.float32)
    if h != w:
      x = jax.image.resize(x, (b, side, side, x.shape[-1]), 'bilinear', antialias=False)
    x = x.astype(self.dtype)
    sn = use_spectral(self.spectral_norm, True)
    for i in range(encoder_layers(side)):
      if i > 0:
        x = leaky_relu(x)
      x = Conv(self.ngf * min(2 ** i, 8), 3, strides=2, padding=1, use_bias=False, spectral=sn,
               dtype=self.dtype, name=f'layer{i + 1}')(x, train)
      x = ParamFreeNorm('instance', name=f'norm{i + 1}')(x, train)
    x = leaky_relu(x).reshape(b, -1)
    sn_fc = use_spectral(self.spectral_norm, False)
    mu = Dense(self.z_dim, spectral=sn_fc, dtype=self.dtype, name='fc_mu')(x, train)
    logvar = Dense(self.z_dim, spectral=sn_fc, dtype=self.dtype, name='fc_var')(x, train)
    return mu.astype(jnp.float32), logvar.astype(jnp.float32)


def build_style_encoder(config: Any, axis_name: str | None = None) -> StyleEncoder:
  """StyleEncoder from a config (`configuration.validate_config`'d by the caller)."""
  m = config.model
  return StyleEncoder(ngf=int(m.ngf), z_dim=int(m.z_dim), spectral_norm=m.spectral_norm,
                      axis_name=axis_name, dtype=to_dtype(m.dtype))
