"""Similarity loss, Eq. 2: binary cross-entropy between the label similarity map A and the
predicted similarity map A'' over all pixel pairs, computed in chunks so that the M x M matrices
are never materialised (peak memory O(M * chunk) in the forward and the backward pass).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ecgan_jax.losses import sampling

Array = jax.Array


def similarity_loss(probs: Array, labels: Array, *, ignore_label: int | None = None,
                    chunk_size: int | None = 1024, num_pixels: int = 0, key: Array | None = None,
                    eps: float = 1e-7) -> Array:
  """L_sim(S, S'') of Eq. 2, averaged over the batch.

  Per image, with pixels i, j of the probability map (M = h * w of them, or the random subset):
    A_ij = [c_i = c_j] from the label map nearest-downsampled to h x w (`downsample_labels`),
    A''_ij = <p_i, p_j> from the label generator's class probabilities,
    L = -1/M_v^2 sum_{i,j valid} A_ij log A''_ij + (1 - A_ij) log(1 - A''_ij),
  with A'' clipped to [eps, 1 - eps] (so each pair costs at most -log(eps) = 16.1 nats for the
  default eps) and M_v the number of valid pixels (label in [0, N) and != ignore_label; the
  don't-care id and anything out of range are excluded). The batch loss is the mean over images
  with at least one valid pixel (0.0 if none: documented masked result).

  Args:
    probs: [B, h, w, N] class probabilities (softmax output of G_l; rows should sum to 1).
    labels: int [B, H, W] ground-truth class ids; H, W multiples of h, w.
    ignore_label: id excluded from all pairs.
    chunk_size: rows of the M x M matrix evaluated at a time (None: all at once, O(M^2) memory).
    num_pixels: if > 0 and < M, a fixed-size random subset of valid pixels per image is used
      (needs `key`); pairs are then taken within the subset.
    key: PRNG key for the subset.
    eps: clipping of A'' inside the logs.
  Returns:
    float32 scalar (nats per pixel pair).
  """
  sampling.check_labels(labels)
  if probs.ndim != 4 or labels.ndim != 3 or probs.shape[0] != labels.shape[0]:
    raise ValueError(f'probs must be [B, h, w, N] and labels [B, H, W]; got {probs.shape} and '
                     f'{labels.shape}')
  b, h, w, n_cls = probs.shape
  lab = sampling.downsample_labels(labels, (h, w)).reshape(b, h * w)
  p = probs.astype(jnp.float32).reshape(b, h * w, n_cls)
  valid = sampling.valid_label_mask(lab, n_cls, ignore_label)
  if 0 < num_pixels < h * w:
    if key is None:
      raise ValueError('similarity_loss with num_pixels > 0 needs a PRNG key')
    score = jnp.where(valid, jax.random.uniform(key, valid.shape), -1.0)
    score, idx = jax.lax.top_k(score, num_pixels)  # uniform subset of the valid pixels
    valid = score >= 0.0
    p = jnp.take_along_axis(p, idx[..., None], axis=1)
    lab = jnp.take_along_axis(lab, idx, axis=1)
  m = p.shape[1]
  chunk = m if chunk_size is None else max(1, min(int(chunk_size), m))
  m_pad = -(-m // chunk) * chunk  # pad rows per image so that no chunk spans two images
  p = jnp.pad(p, ((0, 0), (0, m_pad - m), (0, 0)))
  lab = jnp.pad(lab, ((0, 0), (0, m_pad - m)))
  valid = jnp.pad(valid, ((0, 0), (0, m_pad - m)))

  def row_sums(rows):
    p_r, lab_r, valid_r, img = rows  # [c, N], [c], [c], [c] (one image per chunk)
    p_c, lab_c, valid_c = p[img[0]], lab[img[0]], valid[img[0]]
    a2 = jnp.clip(jnp.einsum('in,jn->ij', p_r, p_c, precision='highest'), eps, 1.0 - eps)
    bce = -jnp.where(lab_r[:, None] == lab_c[None, :], jnp.log(a2), jnp.log1p(-a2))
    return jnp.sum(jnp.where(valid_r[:, None] & valid_c[None, :], bce, 0.0), axis=1)

  img = jnp.repeat(jnp.arange(b), m_pad)
  sums = sampling.chunked_map(
      row_sums, (p.reshape(b * m_pad, n_cls), lab.reshape(-1), valid.reshape(-1), img), chunk)
  n_valid = jnp.sum(valid, axis=1).astype(jnp.float32)  # [B]
  per_image = jnp.sum(sums.reshape(b, m_pad), axis=1) / jnp.maximum(n_valid, 1.0) ** 2
  has_pixels = n_valid > 0
  return jnp.sum(jnp.where(has_pixels, per_image, 0.0)) / jnp.maximum(jnp.sum(has_pixels), 1)
