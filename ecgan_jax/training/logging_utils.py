"""Observability helpers: TensorBoard scalars and images, progress bar, non-finite checks.

Everything here runs on the host with numpy; only process 0 writes files. Label colouring, sample
grids and PNG writing live in `ecgan_jax.evaluation.samples`.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)


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
