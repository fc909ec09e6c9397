"""LPIPS diversity of multi-modal synthesis (paper Table IV, OASIS protocol).

For every label map, `num_samples` (20) images are generated with independent latent codes (VAE z or
OASIS-style 3D noise); the score of the map is the mean LPIPS over all num_samples * (num_samples - 1)
/ 2 unordered pairs; the reported diversity is the mean over label maps. A deterministic generator
scores 0.
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

NUM_SAMPLES = 20  # OASIS protocol

# (labels int [S, H, W], key) -> images [S, H, W, 3] in [-1, 1], one independent latent per row.
SampleFn = Callable[[jnp.ndarray, jax.Array], jnp.ndarray]
# (x0, x1) images [P, H, W, 3] -> LPIPS [P].
LpipsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def mean_pairwise_lpips(lpips_fn: LpipsFn, samples: jnp.ndarray) -> jnp.ndarray:
  """samples [S, H, W, 3] -> mean LPIPS over all S(S-1)/2 unordered pairs (scalar, traceable)."""
  chex.assert_rank(samples, 4)
  i, j = np.triu_indices(samples.shape[0], k=1)
  return jnp.mean(lpips_fn(samples[i], samples[j]))


def make_map_score_fn(sample_fn: SampleFn, lpips_fn: LpipsFn,
                      num_samples: int = NUM_SAMPLES) -> Callable[[jnp.ndarray, jax.Array],
                                                                  jnp.ndarray]:
  """A jittable (label [H, W], key) -> the map's mean pairwise LPIPS over `num_samples` images."""
  if num_samples < 2:
    raise ValueError(f'LPIPS diversity needs at least 2 samples per label map, got {num_samples}')

  def score(label: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    labels = jnp.broadcast_to(label, (num_samples,) + label.shape)
    return mean_pairwise_lpips(lpips_fn, sample_fn(labels, key))
  return score


def lpips_diversity(sample_fn: SampleFn, lpips_fn: LpipsFn, labels: np.ndarray, key: jax.Array,
                    num_samples: int = NUM_SAMPLES) -> float:
  """labels int [N, H, W] -> the mean over maps of each map's mean pairwise LPIPS (one device)."""
  score = jax.jit(make_map_score_fn(sample_fn, lpips_fn, num_samples))
  keys = jax.random.split(key, len(labels))
  return float(np.mean([float(score(jnp.asarray(l), k)) for l, k in zip(labels, keys)]))
