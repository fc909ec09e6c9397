"""Canny edge maps of real images (the edge modality of ECGAN), deterministic, optionally cached.

Settings (DESIGN.md section 4): Gaussian blur with sigma 1.4 on the grey image, hysteresis thresholds
relative to the largest L2 Sobel gradient magnitude of the blurred image (0.075 and 0.175 of it),
L2 gradient norm inside Canny. Relative thresholds make the edge density independent of contrast.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Callable

import cv2
import numpy as np

SIGMA = 1.4
LOW = 0.075
HIGH = 0.175


def canny_edges(image: np.ndarray, sigma: float = SIGMA, low: float = LOW,
                high: float = HIGH) -> np.ndarray:
  """Edge map of an RGB image.

  Args:
    image: uint8 [H, W, 3] RGB.
    sigma: standard deviation of the Gaussian blur, in pixels.
    low, high: hysteresis thresholds as fractions of the maximum gradient magnitude.

  Returns:
    uint8 [H, W]: 255 on edges, 0 elsewhere (all 0 for a flat image).
  """
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'canny_edges wants uint8 [H, W, 3], got {image.dtype} {image.shape}')
  grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
  blurred = cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma,
                             borderType=cv2.BORDER_REFLECT_101)
  gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
  gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
  peak = float(np.sqrt((gx * gx + gy * gy).max()))
  if peak <= 0.0:
    return np.zeros(grey.shape, np.uint8)
  return cv2.Canny(blurred, low * peak, high * peak, L2gradient=True)


def edge_cache_key(key: str, shape: tuple[int, int], source_stamp: str = '') -> str:
  """File-name-safe cache key of an example's edge map at a given [H, W] and Canny setting."""
  digest = hashlib.sha1(
      f'{key}|{shape}|{source_stamp}|{SIGMA}|{LOW}|{HIGH}'.encode()).hexdigest()[:16]
  stem = ''.join(ch if ch.isalnum() or ch in '-_' else '_' for ch in key)[-80:]
  return f'{stem}-{digest}.png'


class EdgeCache:
  """On-disk cache of edge maps (one PNG per example and geometry), safe for concurrent workers."""

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)

  def __repr__(self) -> str:
    return f'EdgeCache({self.directory!r})'

  def get_or_compute(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Returns the cached uint8 [H, W] map `name`, computing and writing it atomically on a miss."""
    path = os.path.join(self.directory, name)
    cached = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.exists(path) else None
    if cached is not None:
      return cached
    edges = compute()
    fd, tmp = tempfile.mkstemp(suffix='.png', dir=self.directory)
    os.close(fd)
    try:
      cv2.imwrite(tmp, edges)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    return edges
