"""FID and KID of generated images: Inception pool3 features on device, statistics and distances
in float64 on the host.

Numerics follow pytorch-fid (`fid_score.calculate_frechet_distance`): mu = mean, sigma = np.cov
(rowvar=False, N-1 normalisation), sqrtm of sigma1 @ sigma2 with scipy.linalg.sqrtm, an eps * I
offset on both covariances when the product is singular, and the real part when the imaginary part is
numerical noise. Reference statistics are cached as .npz files with arrays `mu` [2048] and `sigma`
[2048, 2048], pytorch-fid's format, so published statistics can be used directly.

KID is the unbiased estimate of the squared MMD with the polynomial kernel k(x, y) = (x.y / d + 1)^3
(Binkowski et al. 2018), averaged over random subsets, as in torch-fidelity / clean-fid.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ecgan_jax.models import inception

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- statistics
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """features [N, D] -> (mu float64 [D], sigma float64 [D, D]); N >= 2."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f'feature_statistics needs [N >= 2, D] features, got {f.shape}')
  return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), float64 (pytorch-fid's
  numerics, see the module docstring)."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'FID statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, sigma '
                     f'{sigma1.shape} vs {sigma2.shape}')
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    log.warning('FID: sqrtm of sigma1 @ sigma2 is singular; adding %g to the diagonals', eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f'FID: sqrtm has an imaginary component {np.max(np.abs(covmean.imag))}')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """(mean, std) over `num_subsets` random subsets of the unbiased polynomial-kernel MMD^2.

  features [N, D]; subset_size is capped at the smaller N (>= 2). Float64 on the host.
  """
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  if f1.ndim != 2 or f1.shape[1:] != f2.shape[1:]:
    raise ValueError(f'KID features must be [N, D] with equal D: {f1.shape} vs {f2.shape}')
  m = min(subset_size, f1.shape[0], f2.shape[0])
  if m < 2:
    raise ValueError(f'KID needs at least 2 samples per set, got {f1.shape[0]}, {f2.shape[0]}')
  d = f1.shape[1]
  rng = np.random.default_rng(seed)
  kernel = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
  values = np.empty(num_subsets)
  for i in range(num_subsets):
    x = f1[rng.choice(f1.shape[0], m, replace=False)]
    y = f2[rng.choice(f2.shape[0], m, replace=False)]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    values[i] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
                 (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())
  return float(values.mean()), float(values.std())


# ------------------------------------------------------------------------------ stats cache
def save_statistics(path: str, mu: np.ndarray, sigma: np.ndarray) -> str:
  """Writes pytorch-fid-format statistics (`mu`, `sigma` arrays in one .npz); returns the path."""
  if not path.endswith('.npz'):
    raise ValueError(f'FID statistics file {path!r} must end in .npz')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path, mu=np.asarray(mu), sigma=np.asarray(sigma))
  return path


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) float64 from a pytorch-fid .npz; a clear error if the file lacks them."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'FID statistics file {path!r} does not exist (config.eval.fid_stats)')
  with np.load(path) as f:
    if 'mu' not in f or 'sigma' not in f:
      raise ValueError(f'FID statistics file {path!r} has arrays {list(f.keys())}; expected mu '
                       'and sigma (pytorch-fid format)')
    return np.asarray(f['mu'], np.float64), np.asarray(f['sigma'], np.float64)


# ------------------------------------------------------------------------ device-side features
def make_feature_fn(model: inception.FIDInceptionV3, variables: Any
                    ) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """A jittable images [B, H, W, 3] in [-1, 1] -> pool3 features float32 [B, 2048] (the
  variables are closed over; call it inside pmap / jit)."""
  def features(images: jnp.ndarray) -> jnp.ndarray:
    return model.apply(variables, images)
  return features
