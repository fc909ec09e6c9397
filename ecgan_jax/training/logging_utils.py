"""Observability helpers: label colouring, sample grids (PNG + TensorBoard), scalars, progress bar.

Everything here runs on the host with numpy; only process 0 writes files.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

GRID_COLUMNS = ('label', 'real edge', "I'_e", "I'", 'I_g', "I''", 'real')


def label_palette(num_classes: int, seed: int = 0) -> np.ndarray:
  """[num_classes, 3] uint8 colours: a fixed pseudo-random palette (class 0 black)."""
  rng = np.random.default_rng(seed)
  palette = rng.integers(40, 256, size=(num_classes, 3), dtype=np.int64).astype(np.uint8)
  palette[0] = 0
  return palette


def colorize_labels(label: np.ndarray, num_classes: int) -> np.ndarray:
  """label int [..., H, W] -> uint8 RGB [..., H, W, 3]."""
  palette = label_palette(max(int(num_classes), 1))
  return palette[np.clip(np.asarray(label), 0, len(palette) - 1)]


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [-1, 1] [..., H, W, C] (C = 1 or 3) -> uint8 RGB [..., H, W, 3]."""
  x = np.asarray(image, np.float32)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(columns: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """Tiles equal-shaped uint8 [N, H, W, 3] arrays: one row per example, one column per array.

  Returns uint8 [N*(H+pad)+pad, len(columns)*(W+pad)+pad, 3] on a white background.
  """
  n, h, w, _ = columns[0].shape
  for c in columns:
    if c.shape != (n, h, w, 3):
      raise ValueError(f'grid column of shape {c.shape} does not match {(n, h, w, 3)}')
  grid = np.full((n * (h + pad) + pad, len(columns) * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    for j, c in enumerate(columns):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = c[i]
  return grid


def sample_grid(label: np.ndarray, real_edge: np.ndarray | None, fake_edge: np.ndarray | None,
                coarse: np.ndarray, final: np.ndarray, real: np.ndarray,
                num_classes: int, class_image: np.ndarray | None = None) -> np.ndarray:
  """The training sample grid (GRID_COLUMNS): colourised label | real edge | I'_e | I' | I_g |
  I'' | real.

  label [N, H, W] int; edges [N, H, W, 1 or 3] in [-1, 1] and the class-specific image I_g
  [N, H, W, 3] (None: a grey column, e.g. ablations without G_e / G_c); images [N, H, W, 3] in
  [-1, 1]. Returns uint8 [rows, cols, 3].
  """
  grey = np.full(np.shape(real)[:3] + (3,), 128, np.uint8)
  cols = [colorize_labels(label, num_classes),
          grey if real_edge is None else to_uint8(real_edge),
          grey if fake_edge is None else to_uint8(fake_edge),
          to_uint8(coarse), grey if class_image is None else to_uint8(class_image),
          to_uint8(final), to_uint8(real)]
  return make_grid(cols)


def save_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(image).save(path)


class MetricWriter:
  """TensorBoard scalars and images via tensorboardX (no-op when `enabled` is False)."""

  def __init__(self, logdir: str, enabled: bool = True):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._writer = SummaryWriter(logdir)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(k, float(v), int(step))

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """image uint8 [H, W, 3]."""
    if self._writer is not None:
      self._writer.add_image(tag, image, int(step), dataformats='HWC')

  def text(self, step: int, tag: str, text: str) -> None:
    if self._writer is not None:
      self._writer.add_text(tag, text, int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class Progress:
  """tqdm bar over optimisation steps (step, it/s, ETA) with the main losses as postfix."""

  MAIN = ('d/total', 'g/total', 'g/gan', 'g/vgg', 'g/contrastive')

  def __init__(self, start: int, total: int, enabled: bool = True):
    self._bar = None
    if enabled:
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      self._bar = tqdm(total=total, initial=start, unit='it', dynamic_ncols=True,
                       desc='train', smoothing=0.1)
    self._start_time = time.time()

  def update(self, n: int = 1, metrics: Mapping[str, float] | None = None) -> None:
    if self._bar is None:
      return
    if metrics:
      self._bar.set_postfix({k.split('/', 1)[-1] if k != 'd/total' else 'd': f'{float(v):.3g}'
                             for k, v in metrics.items() if k in self.MAIN}, refresh=False)
    self._bar.update(n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def first_nonfinite(metrics: Mapping[str, Any]) -> str | None:
  """Name of the first loss term (sorted) whose value is NaN or inf, or None."""
  for k in sorted(metrics):
    if not math.isfinite(float(np.asarray(metrics[k]))):
      return k
  return None
