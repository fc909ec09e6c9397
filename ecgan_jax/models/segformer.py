"""SegFormer (Mix Transformer encoder MiT-b0..b5 + all-MLP decode head) in Flax, NHWC.

Used as the label generator G_l of the similarity loss and as the mIoU evaluator. The layer maths
follows Hugging Face's `SegformerForSemanticSegmentation` (the checkpoints we convert), including its
LayerNorm epsilon of 1e-5 everywhere. `ecgan_jax.convert.segformer` maps its weights onto the
parameter names used here:

  params/encoder/stage_{i}/patch_embed/{proj, norm}
  params/encoder/stage_{i}/block_{j}/{norm1, attn/{query, key, value, sr, sr_norm, out}, norm2,
                                      mlp/{fc1, dwconv, fc2}}
  params/encoder/stage_{i}/norm
  params/decode_head/{linear_c{i}, linear_fuse, batch_norm, classifier}
  batch_stats/decode_head/batch_norm/{mean, var}
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax import configuration
from ecgan_jax.models.layers import to_dtype
from ecgan_jax.models.vgg import imagenet_normalize


@dataclasses.dataclass(frozen=True)
class SegFormerSpec:
  """Hyper-parameters of one SegFormer model (the fields of HF's SegformerConfig that shape it)."""
  hidden_sizes: tuple[int, ...] = (32, 64, 160, 256)
  depths: tuple[int, ...] = (2, 2, 2, 2)
  num_heads: tuple[int, ...] = (1, 2, 5, 8)
  sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
  patch_sizes: tuple[int, ...] = (7, 3, 3, 3)
  strides: tuple[int, ...] = (4, 2, 2, 2)
  mlp_ratios: tuple[int, ...] = (4, 4, 4, 4)
  decoder_hidden_size: int = 256
  layer_norm_eps: float = 1e-5

  def __post_init__(self):
    n = len(self.hidden_sizes)
    for f in ('depths', 'num_heads', 'sr_ratios', 'patch_sizes', 'strides', 'mlp_ratios'):
      if len(getattr(self, f)) != n:
        raise ValueError(f'SegFormerSpec.{f} has {len(getattr(self, f))} entries, expected {n}')
    for c, h in zip(self.hidden_sizes, self.num_heads):
      if c % h:
        raise ValueError(f'SegFormerSpec: hidden size {c} is not divisible by {h} heads')


_MIT_WIDE = (64, 128, 320, 512)
# SegFormer paper (Xie et al. 2021), Table 6 / appendix: MiT-b0..b5 and the decoder width.
VARIANTS: dict[str, SegFormerSpec] = {
    'b0': SegFormerSpec(hidden_sizes=(32, 64, 160, 256), depths=(2, 2, 2, 2),
                        decoder_hidden_size=256),
    'b1': SegFormerSpec(hidden_sizes=_MIT_WIDE, depths=(2, 2, 2, 2), decoder_hidden_size=256),
    'b2': SegFormerSpec(hidden_sizes=_MIT_WIDE, depths=(3, 4, 6, 3), decoder_hidden_size=768),
    'b3': SegFormerSpec(hidden_sizes=_MIT_WIDE, depths=(3, 4, 18, 3), decoder_hidden_size=768),
    'b4': SegFormerSpec(hidden_sizes=_MIT_WIDE, depths=(3, 8, 27, 3), decoder_hidden_size=768),
    'b5': SegFormerSpec(hidden_sizes=_MIT_WIDE, depths=(3, 6, 40, 3), decoder_hidden_size=768),
    # Not a published variant (no pretrained weights exist): one block per stage at half b0's
    # widths, for unit tests and CPU try-outs (configs/default.py:make_tiny). Its training step
    # compiles in a fraction of b0's time.
    'tiny': SegFormerSpec(hidden_sizes=(16, 32, 64, 128), depths=(1, 1, 1, 1),
                          num_heads=(1, 1, 2, 4), decoder_hidden_size=64),
}
PUBLISHED_VARIANTS = ('b0', 'b1', 'b2', 'b3', 'b4', 'b5')


def get_spec(variant: str) -> SegFormerSpec:
  """The SegFormerSpec of a named variant: 'b0'..'b5' (the paper's) or 'tiny' (tests)."""
  if variant not in VARIANTS:
    raise ValueError(f'Unknown SegFormer variant {variant!r}: expected one of {sorted(VARIANTS)}')
  return VARIANTS[variant]


def _layer_norm(spec: SegFormerSpec, dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=dtype, name=name)


class EfficientSelfAttention(nn.Module):
  """Multi-head attention whose keys/values are spatially reduced by a strided conv (ratio sr).

  x [B, H, W, C] -> [B, H, W, C]; queries use all H*W tokens, keys/values (H/sr)*(W/sr) tokens.
  """
  spec: SegFormerSpec
  dim: int
  num_heads: int
  sr_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    head_dim = c // self.num_heads
    dense = lambda name: nn.Dense(self.dim, dtype=self.dtype, name=name)
    q = dense('query')(x).reshape(b, h * w, self.num_heads, head_dim)
    kv = x
    if self.sr_ratio > 1:
      r = self.sr_ratio
      kv = nn.Conv(self.dim, (r, r), strides=(r, r), padding='VALID', dtype=self.dtype,
                   name='sr')(kv)
      kv = _layer_norm(self.spec, self.dtype, 'sr_norm')(kv)
    kv = kv.reshape(b, -1, c)
    k = dense('key')(kv).reshape(b, kv.shape[1], self.num_heads, head_dim)
    v = dense('value')(kv).reshape(b, kv.shape[1], self.num_heads, head_dim)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) * (head_dim ** -0.5)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, h, w, c)
    return dense('out')(out)


class DepthwiseConv3x3(nn.Module):
  """3x3 depthwise conv, stride 1, zero padding 1: [B, H, W, C] -> [B, H, W, C].

  Same parameters as `nn.Conv(C, (3, 3), feature_group_count=C)` (kernel [3, 3, 1, C], bias [C]),
  computed as nine shifted multiply-adds that XLA fuses into elementwise kernels. H100, batch 8 at
  256x256, forward ms grouped conv -> this: b0 f32 1.73 -> 1.31, b0 bf16 1.28 -> 1.82, b2 f32
  4.05 -> 4.07, b5 f32 14.8 -> 8.8, b5 bf16 8.6 -> 6.1 (compile times about equal).
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, 1, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = padded[:, :h, :w] * kernel[0, 0, 0]
    for i in range(3):
      for j in range(3):
        if i or j:
          y = y + padded[:, i:i + h, j:j + w] * kernel[i, j, 0]
    return y + bias


class MixFFN(nn.Module):
  """Dense -> 3x3 depthwise conv -> GELU (exact) -> Dense; x [B, H, W, C] -> [B, H, W, C]."""
  dim: int
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x)
    x = DepthwiseConv3x3(self.hidden, self.dtype, name='dwconv')(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(self.dim, dtype=self.dtype, name='fc2')(x)


class MixTransformerBlock(nn.Module):
  """Pre-norm transformer block with stochastic depth (drop_path, only when train)."""
  spec: SegFormerSpec
  dim: int
  num_heads: int
  sr_ratio: int
  mlp_ratio: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  def _drop_path(self, y: jnp.ndarray, train: bool) -> jnp.ndarray:
    if not train or self.drop_path == 0.0:
      return y
    keep = 1.0 - self.drop_path
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (y.shape[0], 1, 1, 1))
    return jnp.where(mask, y / keep, 0.0).astype(y.dtype)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    y = _layer_norm(self.spec, self.dtype, 'norm1')(x)
    y = EfficientSelfAttention(self.spec, self.dim, self.num_heads, self.sr_ratio, self.dtype,
                               name='attn')(y)
    x = x + self._drop_path(y, train)
    y = _layer_norm(self.spec, self.dtype, 'norm2')(x)
    y = MixFFN(self.dim, self.dim * self.mlp_ratio, self.dtype, name='mlp')(y)
    return x + self._drop_path(y, train)


class OverlapPatchEmbed(nn.Module):
  """Conv (kernel p, stride s, padding p // 2) + LayerNorm: [B, H, W, C_in] -> [B, H', W', dim]."""
  spec: SegFormerSpec
  dim: int
  patch_size: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    p, pad = self.patch_size, self.patch_size // 2
    x = nn.Conv(self.dim, (p, p), strides=(self.stride, self.stride), padding=((pad, pad),) * 2,
                dtype=self.dtype, name='proj')(x)
    return _layer_norm(self.spec, self.dtype, 'norm')(x)


class MiTStage(nn.Module):
  """One encoder stage: patch embedding, `depth` blocks, final LayerNorm."""
  spec: SegFormerSpec
  index: int
  drop_path_rates: Sequence[float]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    s, i = self.spec, self.index
    c = s.hidden_sizes[i]
    x = OverlapPatchEmbed(s, c, s.patch_sizes[i], s.strides[i], self.dtype, name='patch_embed')(x)
    for j in range(s.depths[i]):
      x = MixTransformerBlock(s, c, s.num_heads[i], s.sr_ratios[i], s.mlp_ratios[i],
                              self.drop_path_rates[j], self.dtype, name=f'block_{j}')(x, train)
    return _layer_norm(s, self.dtype, 'norm')(x)


class MixTransformer(nn.Module):
  """MiT encoder: x [B, H, W, 3] -> 4 feature maps [B, H/4, W/4, C1] .. [B, H/32, W/32, C4].

  A stage's spatial size is ceil(previous / stride) (overlapping patch embedding with padding p // 2).
  Stochastic depth grows linearly from 0 to `drop_path_rate` over all blocks (as HF/mmseg).
  """
  spec: SegFormerSpec
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, ...]:
    s = self.spec
    total = sum(s.depths)
    rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    outputs = []
    start = 0
    for i, depth in enumerate(s.depths):
      x = MiTStage(s, i, tuple(rates[start:start + depth]), self.dtype, name=f'stage_{i}')(x, train)
      start += depth
      outputs.append(x)
    return tuple(outputs)


def output_size(spec: SegFormerSpec, height: int, width: int) -> tuple[int, int]:
  """(height, width) of the logits for an input of height x width: the first stage's size,
  ceil(H/4) x ceil(W/4) for every standard variant."""
  p, s = spec.patch_sizes[0], spec.strides[0]
  size = lambda n: (n + 2 * (p // 2) - p) // s + 1
  return size(height), size(width)


def _resize_bilinear(x: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Bilinear resize [B, h, w, C] -> [B, height, width, C] with half-pixel centres (torch's
  align_corners=False); only ever upsamples here, so no antialiasing question arises."""
  if x.shape[1:3] == (height, width):
    return x
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), 'bilinear', antialias=False)


class SegFormerHead(nn.Module):
  """All-MLP decoder: per-stage Dense to `width`, upsample to stage 1, concat (deepest first),
  1x1 conv (no bias) + BatchNorm + ReLU, dropout, 1x1 conv classifier -> [B, H/4, W/4, num_labels]."""
  num_labels: int
  width: int
  dropout_rate: float = 0.0
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jnp.ndarray], train: bool) -> jnp.ndarray:
    h, w = features[0].shape[1:3]
    projected = []
    for i, f in enumerate(features):
      y = nn.Dense(self.width, dtype=self.dtype, name=f'linear_c{i}')(f)
      projected.append(_resize_bilinear(y, h, w))
    x = jnp.concatenate(projected[::-1], axis=-1)
    x = nn.Conv(self.width, (1, 1), use_bias=False, dtype=self.dtype, name='linear_fuse')(x)
    # torch BatchNorm2d defaults: momentum 0.1 (flax 0.9), eps 1e-5.
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     axis_name=self.axis_name, dtype=self.dtype, name='batch_norm')(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train or self.dropout_rate == 0.0)(x)
    return nn.Conv(self.num_labels, (1, 1), dtype=self.dtype, name='classifier')(x)


class SegFormer(nn.Module):
  """SegFormer semantic segmenter.

  `__call__(x [B, H, W, 3] ImageNet-normalised, *, train=False) -> logits [B, ceil(H/4),
  ceil(W/4), num_labels]` (float32). `train=True` uses and updates the decode head's BatchNorm
  batch statistics (`mutable=['batch_stats']`, synced over `axis_name`) and, if the rates are > 0,
  needs a 'dropout' RNG. `spec` overrides the hyper-parameters of `variant` (used for converted
  checkpoints of non-standard shape).
  """
  variant: str = 'b0'
  num_labels: int = 150
  spec: SegFormerSpec | None = None
  drop_path_rate: float = 0.0
  classifier_dropout: float = 0.0
  axis_name: str | None = None
  dtype: Any = jnp.float32
  normalize_input: bool = False

  def resolved_spec(self) -> SegFormerSpec:
    return self.spec if self.spec is not None else get_spec(self.variant)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, -1, 3)
    spec = self.resolved_spec()
    b, h, w, _ = x.shape
    if self.normalize_input:
      x = imagenet_normalize(x)
    features = MixTransformer(spec, self.drop_path_rate, self.dtype, name='encoder')(
        x.astype(self.dtype), train)
    logits = SegFormerHead(self.num_labels, spec.decoder_hidden_size, self.classifier_dropout,
                           self.axis_name, self.dtype, name='decode_head')(features, train)
    chex.assert_shape(logits, (b, *output_size(spec, h, w), self.num_labels))
    return logits.astype(jnp.float32)


def build_label_generator(config: Any, axis_name: str | None = None) -> SegFormer:
  """The label generator G_l / mIoU evaluator for `config`: SegFormer of variant
  config.model.label_generator with num_classes(config) output labels, compute dtype
  config.model.dtype, taking images in [-1, 1] (it applies the ImageNet normalisation itself)."""
  return SegFormer(variant=config.model.label_generator,
                   num_labels=configuration.num_classes(config),
                   axis_name=axis_name,
                   dtype=to_dtype(config.model.dtype),
                   normalize_input=True)
