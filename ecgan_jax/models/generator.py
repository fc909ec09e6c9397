"""The ECGAN++ generator: shared SPADE trunk E, edge branch G_e, image branch G_i, attention-guided
edge transfer G_t, semantic-preserving module G_s, class-specific decoder G_c and the projection
head for multi-scale contrastive learning. NHWC throughout.

Structure follows the released ECGAN generator (a SPADE generator body whose final features F feed
two 3x3-conv branches joined by sigmoid attention, then the semantic-preserving head); G_c and the
projection head exist only in the ECGAN++ paper and are this project's design (docs/models.md).
"""
from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax import configuration
from ecgan_jax.models.class_specific import ClassFusion, ClassSpecificDecoder, segment_ids
from ecgan_jax.models.layers import (Conv, Dense, leaky_relu, resblock_class, to_dtype, upsample2x,
                                     use_spectral)
from ecgan_jax.models.semantics import resize_nearest

Dtype = Any


def branch_widths(feature_channels: int, n: int) -> tuple[int, ...]:
  """Widths of the n conv layers of G_e / G_i: C/2, C/4, ... (>= 4); (32, 16, 8) for C=64."""
  return tuple(max(feature_channels // 2 ** (j + 1), 4) for j in range(n))


def config_branch_widths(config: Any) -> tuple[int, ...]:
  """G_e / G_i widths of a config: config.model.branch_widths if set (the released ECGAN code
  hard-codes (32, 16, 8) whatever ngf; () is SPADE's single output conv), else derived from
  feature_channels and edge_transfer_layers."""
  m = config.model
  if m.branch_widths is not None:
    return tuple(int(w) for w in m.branch_widths)
  return branch_widths(int(m.feature_channels), int(m.edge_transfer_layers))


def edge_transfer(image_feature: jax.Array, edge_feature: jax.Array) -> jax.Array:
  """G_t: F_i <- sigmoid(F_e) * F_i + F_i (feature level) and Eq. 1 (content level)."""
  return jax.nn.sigmoid(edge_feature) * image_feature + image_feature


class SPADETrunk(nn.Module):
  """Shared encoder E: the SPADE generator body.

  cond [B, H, W, Cs] (one-hot semantics, plus broadcast noise channels in noise3d mode) ->
  (F [B, H, W, feature_channels], {stride: last trunk features at that output stride}).
  Input path: 'vae' -> Dense(z) reshaped to the latent grid; otherwise the condition map nearest-
  downsampled (striding) to the latent size and a 3x3 conv. Blocks: head_0, G_middle_0, G_middle_1
  (16 ngf), up_0..up_3 (8, 4, 2, 1 ngf; the last one outputs feature_channels), up_4 for 'most'.
  """
  ngf: int = 64
  feature_channels: int = 64
  num_upsampling_layers: str = 'normal'
  latent_hw: tuple[int, int] = (8, 8)
  multimodal: str = 'none'
  spade_hidden: int = 128
  param_free_norm: str = 'batch'
  spectral_norm: str = 'reference'
  remat: bool = False
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  onehot_classes: int = 0  # > 0: cond's first n channels are one-hot (gathered SPADE/fc convs)

  @nn.compact
  def __call__(self, cond: jax.Array, z: jax.Array | None, train: bool
               ) -> tuple[jax.Array, dict[int, jax.Array]]:
    nf, (sh, sw) = self.ngf, self.latent_hw
    b, h, w = cond.shape[:3]
    block_cls = resblock_class(self.remat)
    sn_first = use_spectral(self.spectral_norm, False)

    def block(features, name):
      return block_cls(features, self.spade_hidden, self.param_free_norm, self.spectral_norm,
                       self.axis_name, self.dtype, self.onehot_classes, name=name)

    if self.multimodal == 'vae':
      chex.assert_shape(z, (b, None))
      x = Dense(16 * nf * sh * sw, spectral=sn_first, dtype=self.dtype, name='fc')(
          z.astype(self.dtype), train)
      x = x.reshape(b, sh, sw, 16 * nf)
    else:
      onehot = (0, self.onehot_classes) if self.onehot_classes else None
      x = Conv(16 * nf, 3, spectral=sn_first, dtype=self.dtype, onehot=onehot, name='fc')(
          resize_nearest(cond, (sh, sw)).astype(self.dtype), train)

    taps: dict[int, jax.Array] = {}

    def tap(x):
      taps[h // x.shape[1]] = x
      return x

    more = self.num_upsampling_layers in ('more', 'most')
    most = self.num_upsampling_layers == 'most'
    x = tap(block(16 * nf, 'head_0')(x, cond, train))
    x = tap(block(16 * nf, 'G_middle_0')(upsample2x(x), cond, train))
    if more:
      x = upsample2x(x)
    x = tap(block(16 * nf, 'G_middle_1')(x, cond, train))
    widths = [8 * nf, 4 * nf, 2 * nf, nf if most else self.feature_channels]
    for i, width in enumerate(widths):
      x = tap(block(width, f'up_{i}')(upsample2x(x), cond, train))
    if most:
      x = tap(block(self.feature_channels, 'up_4')(upsample2x(x), cond, train))
    chex.assert_shape(x, (b, h, w, self.feature_channels))
    return x, taps


class EdgeBranch(nn.Module):
  """G_e: F [B, H, W, C] -> (n edge feature maps F_e^j [B, H, W, w_j], edge map I'_e [B, H, W, 3]).

  F_e^j = conv3x3(lrelu(F_e^{j-1})), F_e^0 = F; I'_e = tanh(conv3x3(lrelu(F_e^n))).
  """
  widths: Sequence[int] = (32, 16, 8)
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, f: jax.Array, train: bool) -> tuple[list[jax.Array], jax.Array]:
    sn = use_spectral(self.spectral_norm, False)
    feats, x = [], f
    for j, width in enumerate(self.widths):
      x = Conv(width, 3, spectral=sn, dtype=self.dtype, name=f'conv_edge{j + 1}')(
          leaky_relu(x), train)
      feats.append(x)
    out = Conv(3, 3, spectral=sn, dtype=self.dtype, name=f'conv_edge{len(self.widths) + 1}')(
        leaky_relu(x), train)
    return feats, jnp.tanh(out)


class ImageBranch(nn.Module):
  """G_i (with G_t at feature level): F [B, H, W, C] -> intermediate image I'_i [B, H, W, 3].

  F_i^j = conv3x3(lrelu(F_i^{j-1})); if edge features are given (G_t on), each is refined as
  F_i^j <- sigmoid(F_e^j) * F_i^j + F_i^j before the next layer. I'_i = tanh(conv3x3(lrelu(F_i^n))).
  """
  widths: Sequence[int] = (32, 16, 8)
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, f: jax.Array, edge_feats: Sequence[jax.Array] | None, train: bool
               ) -> jax.Array:
    sn = use_spectral(self.spectral_norm, False)
    x = f
    for j, width in enumerate(self.widths):
      x = Conv(width, 3, spectral=sn, dtype=self.dtype, name=f'conv_img{j + 1}')(
          leaky_relu(x), train)
      if edge_feats is not None:
        x = edge_transfer(x, edge_feats[j])
    out = Conv(3, 3, spectral=sn, dtype=self.dtype, name=f'conv_img{len(self.widths) + 1}')(
        leaky_relu(x), train)
    return jnp.tanh(out)


class SemanticPreserving(nn.Module):
  """G_s: calF = [F, I', I'_e, S] [B, H, W, Cf] -> final image I'' [B, H, W, 3].

  F_c = conv3x3(lrelu(calF)) with one channel per class (N); gamma' = sigmoid(avgpool_HW(F_c));
  F_c' = F_c * gamma' + F_c; calF' = conv3x3(lrelu(F_c')) back to Cf channels;
  I'' = tanh(conv3x3(lrelu(calF'))). `onehot` (start, n): the one-hot channels of calF (S's
  classes), gathered in the first conv (`Conv.onehot`; lrelu keeps 0/1).
  """
  num_classes: int
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32
  onehot: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, combined: jax.Array, train: bool) -> jax.Array:
    sn = use_spectral(self.spectral_norm, False)
    fc = Conv(self.num_classes, 3, spectral=sn, dtype=self.dtype, onehot=self.onehot,
              name='conv_comb1')(
        leaky_relu(combined), train)
    gamma = jax.nn.sigmoid(jnp.mean(fc.astype(jnp.float32), axis=(1, 2), keepdims=True))
    fc = fc + fc * gamma.astype(fc.dtype)
    f2 = Conv(combined.shape[-1], 3, spectral=sn, dtype=self.dtype, name='conv_comb2')(
        leaky_relu(fc), train)
    out = Conv(3, 3, spectral=sn, dtype=self.dtype, name='conv_comb')(leaky_relu(f2), train)
    return jnp.tanh(out)


class ProjectionHead(nn.Module):
  """Per-stride 1x1 conv -> ReLU -> 1x1 conv heads into one shared L2-normalised embedding space.

  {stride: features [B, H/s, W/s, C_s]} -> {'s<stride>': [B, H/s, W/s, proj_dim]} (unit L2 norm,
  float32). Hidden width min(C_s, 256) but at least proj_dim.
  """
  strides: Sequence[int] = (1, 4, 8, 16)
  proj_dim: int = 128
  spectral_norm: str = 'reference'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, taps: dict[int, jax.Array], train: bool) -> dict[str, jax.Array]:
    sn = use_spectral(self.spectral_norm, False)
    out = {}
    for s in self.strides:
      x = taps[s]
      hidden = max(min(x.shape[-1], 256), self.proj_dim)
      x = nn.relu(Conv(hidden, 1, spectral=sn, dtype=self.dtype, name=f's{s}_0')(x, train))
      x = Conv(self.proj_dim, 1, spectral=sn, dtype=self.dtype, name=f's{s}_1')(x, train)
      x = x.astype(jnp.float32)
      out[f's{s}'] = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-24))
    return out


class ECGANGenerator(nn.Module):
  """The ECGAN++ generator G. Build it from a config with `build_generator`.

  __call__(semantics [B, H, W, semantic_nc], z [B, z_dim] | None, *, train) -> dict:
    'image' I'' [B, H, W, 3] (G_s output; equals I' when G_s is off), 'coarse_image' I',
    'edge' I'_e [B, H, W, 3] | None, 'class_image' I_g [B, H, W, 3] | None (G_c: every present
    class, models/class_specific.py; with class_fusion 'learned' I'' is G_s's output fused with
    I_g by per-pixel weights), 'embeddings' {'s1', 's4', ...} -> [B, H/s, W/s, proj_dim] | None.
  All outputs float32. RNG stream 'noise' is used only when multimodal is 'vae'/'noise3d' and z is
  None. Variables: 'params' and 'batch_stats' (BatchNorm running stats, spectral-norm u/sigma).
  With onehot_gather (default) the first num_classes channels of `semantics` must be one-hot, as
  `one_hot_semantics` builds them: the convolutions over them gather kernel rows instead.
  """
  num_classes: int
  semantic_nc: int
  image_hw: tuple[int, int]
  latent_hw: tuple[int, int]
  ignore_label: int | None = None
  ngf: int = 64
  num_upsampling_layers: str = 'normal'
  spade_hidden: int = 128
  param_free_norm: str = 'batch'
  spectral_norm: str = 'reference'
  feature_channels: int = 64
  edge_transfer_layers: int = 3
  branch_widths: tuple[int, ...] | None = None  # None: branch_widths(feature_channels, n)
  multimodal: str = 'none'
  z_dim: int = 256
  proj_dim: int = 128
  contrastive_strides: tuple[int, ...] = (1, 4, 8, 16)
  class_fusion: str = 'learned'  # 'learned' (I_g fused into I'') | 'discriminator' (D judges I_g)
  use_edge: bool = True
  use_edge_transfer: bool = True
  use_semantic_preserving: bool = True
  use_class_specific: bool = True
  use_projection_head: bool = True
  remat: bool = False
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  onehot_gather: bool = True  # semantics' class channels are one-hot: gathered convs over them

  @nn.compact
  def __call__(self, semantics: jax.Array, z: jax.Array | None = None, *, train: bool
               ) -> dict[str, Any]:
    b = semantics.shape[0]
    h, w = self.image_hw
    chex.assert_shape(semantics, (b, h, w, self.semantic_nc))
    semantics = semantics.astype(jnp.float32)
    if self.multimodal in ('vae', 'noise3d') and z is None:
      z = jax.random.normal(self.make_rng('noise'), (b, self.z_dim), jnp.float32)
    if z is not None:
      chex.assert_shape(z, (b, self.z_dim))
    cond = semantics
    if self.multimodal == 'noise3d':  # OASIS: the same z at every pixel, beside the label map
      cond = jnp.concatenate(
          [semantics, jnp.broadcast_to(z[:, None, None, :], (b, h, w, self.z_dim))], axis=-1)

    f, taps = SPADETrunk(
        self.ngf, self.feature_channels, self.num_upsampling_layers, self.latent_hw,
        self.multimodal, self.spade_hidden, self.param_free_norm, self.spectral_norm, self.remat,
        self.axis_name, self.dtype, self.num_classes if self.onehot_gather else 0,
        name='trunk')(cond, z if self.multimodal == 'vae' else None,
                                                  train)
    widths = (branch_widths(self.feature_channels, self.edge_transfer_layers)
              if self.branch_widths is None else self.branch_widths)
    edge_feats, edge = None, None
    if self.use_edge:
      edge_feats, edge = EdgeBranch(widths, self.spectral_norm, self.dtype, name='edge_branch')(
          f, train)
    image_i = ImageBranch(widths, self.spectral_norm, self.dtype, name='image_branch')(
        f, edge_feats if self.use_edge_transfer else None, train)
    self.sow('intermediates', 'image_branch_output', image_i)
    coarse = edge_transfer(image_i, edge) if self.use_edge_transfer else image_i  # Eq. 1

    image = coarse
    if self.use_semantic_preserving:
      parts = [f, coarse.astype(f.dtype)]
      if edge is not None:
        parts.append(edge.astype(f.dtype))
      parts.append(semantics.astype(f.dtype))
      combined = jnp.concatenate(parts, -1)
      onehot = ((combined.shape[-1] - self.semantic_nc, self.num_classes)
                if self.onehot_gather else None)
      image = SemanticPreserving(self.num_classes, self.spectral_norm, self.dtype, onehot,
                                 name='semantic_preserving')(combined, train)

    class_image = None
    if self.use_class_specific:
      ids = segment_ids(semantics, self.num_classes, self.ignore_label)
      class_image = ClassSpecificDecoder(branch_widths(self.feature_channels, 2),
                                         self.spectral_norm, self.dtype,
                                         name='class_decoder')(f, ids, train)
      if self.class_fusion == 'learned':
        image = ClassFusion(self.spectral_norm, self.dtype, name='class_fusion')(
            f, image, class_image, train)
    out = {'image': image, 'coarse_image': coarse, 'edge': edge, 'class_image': class_image,
           'embeddings': None}
    if self.use_projection_head:
      out['embeddings'] = ProjectionHead(self.contrastive_strides, self.proj_dim,
                                         self.spectral_norm, self.dtype,
                                         name='projection_head')(taps, train)
    out = jax.tree.map(lambda a: a if a.dtype in (jnp.int32, jnp.bool_)
                       else a.astype(jnp.float32), out)
    for key in ('image', 'coarse_image'):
      chex.assert_shape(out[key], (b, h, w, 3))
    return out


def build_generator(config: Any, axis_name: str | None = None) -> ECGANGenerator:
  """ECGANGenerator from a config (checked by `configuration.validate_config` beforehand)."""
  m = config.model
  return ECGANGenerator(
      num_classes=configuration.num_classes(config),
      semantic_nc=configuration.semantic_nc(config),
      image_hw=configuration.image_size(config),
      latent_hw=configuration.latent_size(config),
      ignore_label=configuration.ignore_label(config),
      ngf=int(m.ngf),
      num_upsampling_layers=m.num_upsampling_layers,
      spade_hidden=int(m.spade_hidden),
      param_free_norm=m.param_free_norm,
      spectral_norm=m.spectral_norm,
      feature_channels=int(m.feature_channels),
      edge_transfer_layers=int(m.edge_transfer_layers),
      branch_widths=config_branch_widths(config),
      multimodal=m.multimodal,
      z_dim=int(m.z_dim),
      proj_dim=int(m.proj_dim),
      contrastive_strides=tuple(int(s) for s in m.contrastive_strides),
      class_fusion=m.class_fusion,
      use_edge=bool(m.use_edge),
      use_edge_transfer=bool(m.use_edge_transfer),
      use_semantic_preserving=bool(m.use_semantic_preserving),
      use_class_specific=bool(m.use_class_specific),
      use_projection_head=bool(config.loss.use_pixel_contrastive),
      remat=bool(m.remat),
      onehot_gather=bool(m.onehot_gather),
      axis_name=axis_name,
      dtype=to_dtype(m.dtype))
