"""Pixel-wise (Eq. 4), multi-scale (Eq. 5) and cross-scale (Eq. 6) contrastive losses, and the
class-specific L1 reconstruction loss of Sec. 3.3 (the three terms inside lambda_l in Eq. 9).

Conventions: embeddings are float [.., D], compared by dot product divided by the temperature tau
(the projection head L2-normalises them; nothing here re-normalises). Labels are int class ids;
masked rows never act as anchor, positive or negative. Losses are float32 scalars.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from ecgan_jax.losses import sampling
from ecgan_jax.losses.memory_bank import MemoryBank, memory_bank_contrast

Array = jax.Array

SCALE_WEIGHTS = (1.0, 0.7, 0.4, 0.1)
STRIDES = (1, 4, 8, 16)
CROSS_SCALE_PAIRS = ((4, 8), (4, 16))


def _anchor_terms(rows, contrast, c_labels, c_valid, c_ids, inv_tau):
  """Per-anchor Eq. 4 for a chunk of anchors: returns (loss [c] (0 if no positive), has_pos [c])."""
  a, a_labels, a_valid, a_ids = rows
  logits = jnp.einsum('ad,kd->ak', a, contrast, precision='highest') * inv_tau  # [c, K]
  pair = a_valid[:, None] & c_valid[None, :] & (a_ids[:, None] != c_ids[None, :])
  same = a_labels[:, None] == c_labels[None, :]
  pos, neg = pair & same, pair & ~same
  has_neg = jnp.any(neg, axis=1)
  # log sum_n e^n per anchor, shifted by the largest negative (a constant for the gradient).
  neg_max = jax.lax.stop_gradient(
      jnp.where(has_neg, jnp.max(jnp.where(neg, logits, -jnp.inf), axis=1), 0.0))
  # exp(-inf) = 0 for non-negatives: masking before exp keeps inf (and NaN gradients) out.
  neg_sum = jnp.sum(jnp.exp(jnp.where(neg, logits - neg_max[:, None], -jnp.inf)), axis=1)  # >= 1
  lse_neg = jnp.where(has_neg, neg_max + jnp.log(jnp.where(has_neg, neg_sum, 1.0)), 0.0)
  # -log(e^l / (e^l + sum_n e^n)) = log(1 + e^(lse_neg - l)) = softplus(lse_neg - l): stable for
  # any logits. Without negatives the term is -log 1 = 0.
  per_pair = jnp.where(has_neg[:, None], jax.nn.softplus(lse_neg[:, None] - logits), 0.0)
  n_pos = jnp.sum(pos, axis=1)
  per_anchor = jnp.sum(jnp.where(pos, per_pair, 0.0), axis=1) / jnp.maximum(n_pos, 1)
  has_pos = n_pos > 0
  return jnp.where(has_pos, per_anchor, 0.0), has_pos


def pixel_contrastive_sums(anchors: Array, anchor_labels: Array, anchor_valid: Array | None = None,
                           contrast: Array | None = None, contrast_labels: Array | None = None,
                           contrast_valid: Array | None = None, *, temperature: float = 0.07,
                           exclude_self: bool | None = None,
                           chunk_size: int | None = None) -> tuple[Array, Array]:
  """(sum of per-anchor Eq. 4 losses, number of anchors with >= 1 positive): see
  `pixel_contrastive_loss`, which returns their ratio. Exposed so losses can be pooled."""
  sampling.check_temperature(temperature)
  sampling.check_labels(anchor_labels, 'anchor_labels')
  if anchors.ndim != 2 or anchor_labels.shape != anchors.shape[:1]:
    raise ValueError(f'anchors must be [A, D] with anchor_labels [A]; got {anchors.shape} and '
                     f'{anchor_labels.shape}')
  n_a = anchors.shape[0]
  if anchor_valid is None:
    anchor_valid = jnp.ones((n_a,), bool)
  if contrast is None:
    if contrast_labels is not None or contrast_valid is not None:
      raise ValueError('contrast_labels/contrast_valid given without contrast embeddings')
    contrast, contrast_labels, contrast_valid = anchors, anchor_labels, anchor_valid
    exclude_self = True if exclude_self is None else exclude_self
  if contrast_labels is None:
    raise ValueError('contrast embeddings need contrast_labels')
  sampling.check_labels(contrast_labels, 'contrast_labels')
  if (contrast.ndim != 2 or contrast.shape[1] != anchors.shape[1]
      or contrast_labels.shape != contrast.shape[:1]):
    raise ValueError(f'contrast must be [K, {anchors.shape[1]}] with contrast_labels [K]; got '
                     f'{contrast.shape} and {contrast_labels.shape}')
  if contrast_valid is None:
    contrast_valid = jnp.ones(contrast.shape[:1], bool)
  if anchor_valid.shape != (n_a,) or contrast_valid.shape != contrast.shape[:1]:
    raise ValueError(f'valid masks must be [A] and [K]; got {anchor_valid.shape} and '
                     f'{contrast_valid.shape}')
  if exclude_self and contrast.shape[0] < n_a:
    raise ValueError('exclude_self needs the anchors to be the first A rows of contrast')
  # Self-pairs (anchor i vs contrast row i) are excluded when the anchors lead the contrast set.
  a_ids = jnp.arange(n_a) if exclude_self else jnp.full((n_a,), -1)
  c_ids = jnp.arange(contrast.shape[0])
  rows = (anchors.astype(jnp.float32), anchor_labels, anchor_valid.astype(bool), a_ids)
  loss, has_pos = sampling.chunked_map(
      lambda r: _anchor_terms(r, contrast.astype(jnp.float32), contrast_labels,
                              contrast_valid.astype(bool), c_ids, 1.0 / temperature),
      rows, chunk_size)
  return jnp.sum(loss), jnp.sum(has_pos).astype(jnp.float32)


def pixel_contrastive_loss(anchors: Array, anchor_labels: Array, anchor_valid: Array | None = None,
                           contrast: Array | None = None, contrast_labels: Array | None = None,
                           contrast_valid: Array | None = None, *, temperature: float = 0.07,
                           exclude_self: bool | None = None,
                           chunk_size: int | None = None) -> Array:
  """Supervised pixel-wise InfoNCE, Eq. 4, averaged over anchors.

  For anchor i with label c: L_i = 1/|P_i| sum_{p in P_i} -log(exp(i.p/tau) / (exp(i.p/tau) +
  sum_{n in N_i} exp(i.n/tau))), with P_i the valid contrast rows of class c and N_i the valid
  rows of other classes. The loss is the mean of L_i over valid anchors that have at least one
  positive (others are masked out); 0.0 if there is none (documented masked result, never NaN).

  Args:
    anchors: [A, D] embeddings; anchor_labels int [A]; anchor_valid bool [A] (None: all valid).
    contrast: [K, D]; contrast_labels int [K]; contrast_valid bool [K]. None: contrast the anchors
      with each other (self-pairs excluded).
    temperature: tau > 0 (a Python float; checked at trace time).
    exclude_self: exclude pair (i, i), for contrast sets whose first A rows are the anchors
      (default: True iff contrast is None).
    chunk_size: evaluate this many anchors at a time (peak memory O(chunk * K)); None: all at once.
  Returns:
    float32 scalar (nats).
  """
  total, count = pixel_contrastive_sums(anchors, anchor_labels, anchor_valid, contrast,
                                        contrast_labels, contrast_valid, temperature=temperature,
                                        exclude_self=exclude_self, chunk_size=chunk_size)
  return total / jnp.maximum(count, 1.0)


def memory_bank_loss(anchors: Array, anchor_labels: Array, anchor_valid: Array | None,
                     bank: MemoryBank, *, temperature: float = 0.07, key: Array | None = None,
                     samples_per_class: int | None = None,
                     chunk_size: int | None = None) -> Array:
  """Eq. 4 with the memory bank as the contrast set (positives: bank rows of the anchor's class,
  negatives: rows of other classes; unwritten rows masked). 0.0 if no anchor has a written
  positive (e.g. an empty bank). `key`/`samples_per_class` as in `memory_bank_contrast`."""
  return pixel_contrastive_loss(anchors, anchor_labels, anchor_valid,
                                *memory_bank_contrast(bank, key, samples_per_class),
                                temperature=temperature, exclude_self=False, chunk_size=chunk_size)


def _scale_labels(embeddings: Mapping[str, Array], labels: Array,
                  stride: int) -> tuple[Array, Array]:
  name = f's{stride}'
  if name not in embeddings or embeddings[name] is None:
    raise ValueError(f'embeddings has no scale {name!r}; keys: {sorted(embeddings)}')
  emb = embeddings[name]
  if emb.ndim != 4 or emb.shape[0] != labels.shape[0]:
    raise ValueError(f'embeddings[{name!r}] must be [B, H/{stride}, W/{stride}, D] with the '
                     f'batch size {labels.shape[0]} of the labels; got {emb.shape}')
  return emb, sampling.downsample_labels(labels, emb.shape[1:3])


def sample_multiscale_anchors(key: Array, embeddings: Mapping[str, Array], labels: Array, *,
                              strides: Sequence[int], num_classes: int, anchors_per_class: int,
                              max_classes: int | None = None, ignore_label: int | None = None,
                              axis_name: str | None = None) -> dict[int, sampling.Anchors]:
  """Anchors per stride: labels [B, H, W] nearest-downsampled to each embeddings[f's{stride}'] and
  `sampling.sample_anchors` drawn with key fold_in(key, stride). Same key -> same anchors, so
  `multiscale_contrastive_loss` and `cross_scale_contrastive_loss` share them (and XLA dedupes)."""
  out = {}
  for s in sorted(set(int(s) for s in strides)):
    emb, lab = _scale_labels(embeddings, labels, s)
    out[s] = sampling.sample_anchors(
        jax.random.fold_in(key, s), emb, lab, num_classes=num_classes,
        anchors_per_class=anchors_per_class, max_classes=max_classes, ignore_label=ignore_label,
        axis_name=axis_name)
  return out


def multiscale_contrastive_loss(key: Array, embeddings: Mapping[str, Array], labels: Array, *,
                                num_classes: int, strides: Sequence[int] = STRIDES,
                                weights: Sequence[float] = SCALE_WEIGHTS,
                                temperature: float = 0.07, anchors_per_class: int = 16,
                                max_classes: int | None = 16, ignore_label: int | None = None,
                                axis_name: str | None = None,
                                banks: Mapping[str, MemoryBank] | None = None,
                                bank_samples_per_class: int | None = None,
                                chunk_size: int | None = None) -> Array:
  """Eq. 5: L^ms = sum_s w_s L^s, each L^s the Eq. 4 loss among anchors of one scale.

  For each stride s the labels [B, H, W] are nearest-downsampled to embeddings[f's{s}']
  [B, H/s, W/s, D]; anchors are drawn per class (`sample_anchors`, gathered over `axis_name` so
  they come from every device's layouts) and contrasted with each other (self-pairs excluded) and,
  if `banks` is given, with the memory bank of the same stride, banks[f's{s}'], filled from
  stride-s embeddings (`memory_bank_contrast`, `bank_samples_per_class` rows per class per queue
  drawn with fold_in(fold_in(key, 0), s); None: the whole bank). Scales meet only in Eq. 6. The
  first term (stride 1) is exactly Eq. 4. Weights default to the paper's (1, 0.7, 0.4, 0.1).
  float32 scalar.
  """
  if len(weights) != len(strides):
    raise ValueError(f'{len(weights)} weights for {len(strides)} strides')
  anchors = sample_multiscale_anchors(
      key, embeddings, labels, strides=strides, num_classes=num_classes,
      anchors_per_class=anchors_per_class, max_classes=max_classes, ignore_label=ignore_label,
      axis_name=axis_name)
  total = jnp.float32(0.0)
  for s, w in zip(strides, weights):
    a = anchors[int(s)]
    contrast = (None, None, None)
    if banks is not None:
      if f's{s}' not in banks:
        raise ValueError(f'banks has no bank for stride {s} (key {f"s{s}"!r}); keys: '
                         f'{sorted(banks)}')
      bank_set = memory_bank_contrast(banks[f's{s}'],
                                      jax.random.fold_in(jax.random.fold_in(key, 0), int(s)),
                                      bank_samples_per_class)
      contrast = tuple(jnp.concatenate([x, y]) for x, y in zip(a, bank_set))
    total += w * pixel_contrastive_loss(*a, *contrast, temperature=temperature, exclude_self=True,
                                        chunk_size=chunk_size)
  return total


def cross_scale_contrastive_loss(key: Array, embeddings: Mapping[str, Array], labels: Array, *,
                                 num_classes: int,
                                 pairs: Sequence[tuple[int, int]] = CROSS_SCALE_PAIRS,
                                 weights: float | Sequence[float] = 0.1,
                                 temperature: float = 0.07, anchors_per_class: int = 16,
                                 max_classes: int | None = 16, ignore_label: int | None = None,
                                 axis_name: str | None = None,
                                 chunk_size: int | None = None) -> Array:
  """Eq. 6: L^cs = sum_(p,q) w_pq L^(p,q) over the stride pairs (default (4, 8), (4, 16), w 0.1).

  L^(p,q) contrasts anchors of stride p with the anchors of stride q: same class across the two
  scales is positive, a different class negative. It is taken in both directions and averaged,
  L^(p,q) = (L(p -> q) + L(q -> p)) / 2, the "bidirectional local-global consistency" of Sec. 3.3.
  Anchors are drawn as in `multiscale_contrastive_loss` (same key -> same anchors). float32 scalar.
  """
  pairs = tuple((int(p), int(q)) for p, q in pairs)
  if isinstance(weights, (int, float)):
    weights = (float(weights),) * len(pairs)
  if len(weights) != len(pairs):
    raise ValueError(f'{len(weights)} weights for {len(pairs)} cross-scale pairs')
  for p, q in pairs:
    if p == q:
      raise ValueError(f'cross-scale pair ({p}, {q}) must join two different strides')
  anchors = sample_multiscale_anchors(
      key, embeddings, labels, strides=[s for pair in pairs for s in pair],
      num_classes=num_classes, anchors_per_class=anchors_per_class, max_classes=max_classes,
      ignore_label=ignore_label, axis_name=axis_name)
  total = jnp.float32(0.0)
  for (p, q), w in zip(pairs, weights):
    fwd = pixel_contrastive_loss(*anchors[p], *anchors[q], temperature=temperature,
                                 exclude_self=False, chunk_size=chunk_size)
    bwd = pixel_contrastive_loss(*anchors[q], *anchors[p], temperature=temperature,
                                 exclude_self=False, chunk_size=chunk_size)
    total += w * 0.5 * (fwd + bwd)
  return total


def class_specific_l1_loss(class_image: Array, image: Array, labels: Array, *, num_classes: int,
                           ignore_label: int | None = None) -> Array:
  """Class-specific pixel-generation L1 of Sec. 3.3: L_L1 = sum_c E[||I_c - I^_c||_1].

  I_c = m_c * image is the real image masked to class c, I^_c = m_c * I_g the class-specific
  output for class c (G_c generates every class, each inside its own region, and I_g is their sum,
  so I^_c is I_g on m_c). Per image: sum over the classes present of the mean over H, W, 3 of
  |m_c * (image - I_g)|, i.e. the mean over H, W, 3 of |image - I_g| on pixels of a valid class
  (don't-care and out-of-range ids excluded); averaged over the batch.

  Args:
    class_image: I_g [B, H, W, 3]; image: [B, H, W, 3] real image in [-1, 1]; labels: int
      [B, H, W] class ids.
  Returns:
    float32 scalar (mean absolute error, image units, summed over classes).
  """
  sampling.check_labels(labels)
  if class_image.shape != image.shape or image.shape[:3] != labels.shape:
    raise ValueError(f'expected class_image and image [B, H, W, C], labels [B, H, W]; got '
                     f'{class_image.shape}, {image.shape}, {labels.shape}')
  valid = sampling.valid_label_mask(labels, num_classes, ignore_label)[..., None]
  err = jnp.abs(image.astype(jnp.float32) - class_image.astype(jnp.float32))
  return jnp.mean(jnp.where(valid, err, 0.0))
