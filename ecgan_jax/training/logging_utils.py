"""Observability helpers: TensorBoard scalars and images, progress bar, non-finite checks, the
console's log handler.

Everything here runs on the host with numpy; only process 0 writes files. Label colouring, sample
grids and PNG writing live in `ecgan_jax.evaluation.samples`.
"""
from __future__ import annotations

import logging
import math
import re
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np

log = logging.getLogger(__name__)


_ILLEGAL_TAG_CHARS = re.compile(r'[^-/\w.]')


def clean_tag(tag: str) -> str:
  """A TensorBoard summary name made of [-/_.A-Za-z0-9] ('a|b c' -> 'a_b_c'), so tensorboardX has
  nothing to rename (and warn about)."""
  return _ILLEGAL_TAG_CHARS.sub('_', tag)


class MetricWriter:
  """TensorBoard scalars and images via tensorboardX (no-op when `enabled` is False); tags are
  cleaned with `clean_tag`."""

  def __init__(self, logdir: str, enabled: bool = True):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._writer = SummaryWriter(logdir)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(clean_tag(k), float(v), int(step))

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """image uint8 [H, W, 3]."""
    if self._writer is not None:
      self._writer.add_image(clean_tag(tag), image, int(step), dataformats='HWC')

  def text(self, step: int, tag: str, text: str) -> None:
    if self._writer is not None:
      self._writer.add_text(clean_tag(tag), text, int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class Eta:
  """Remaining time from the steps timed after the first one, which holds the compile.

  `step_done(n)` after each step; `seconds(remaining)` is None until a step after the first has
  been timed. `clock` is injectable for tests (default time.monotonic).
  """

  def __init__(self, clock: Callable[[], float] = time.monotonic):
    self._clock = clock
    self._t0: float | None = None  # end of the first (compiling) step
    self._steps = 0  # steps finished since _t0

  def step_done(self, n: int = 1) -> None:
    if self._t0 is None:
      self._t0 = self._clock()
      n -= 1
    self._steps += n

  def seconds(self, remaining: int) -> float | None:
    if self._t0 is None or self._steps < 1:
      return None
    return (self._clock() - self._t0) / self._steps * max(int(remaining), 0)


def format_duration(seconds: float | None) -> str:
  """1234.5 -> '20:34', 7384 -> '2:03:04', None -> '?'."""
  if seconds is None:
    return '?'
  s = int(round(seconds))
  h, m = divmod(s, 3600)
  m, s = divmod(m, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


class Progress:
  """tqdm bar over optimisation steps: step, s/it and ETA measured after the first (compiling) step,
  and the main losses (D, G total, GAN, feature matching, VGG, similarity, contrastive)."""

  MAIN = {'d/total': 'd', 'g/total': 'g', 'g/gan': 'gan', 'g/feat': 'feat', 'g/vgg': 'vgg',
          'g/similarity': 'sim', 'g/contrastive': 'contr'}

  def __init__(self, start: int, total: int, enabled: bool = True,
               clock: Callable[[], float] = time.monotonic):
    self._bar = None
    self.n, self.total = int(start), int(total)
    self.eta = Eta(clock)
    self._clock = clock
    self._last = clock()
    self._losses = ''
    if enabled:
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      self._bar = tqdm(total=total, initial=start, unit='it', dynamic_ncols=True, desc='train',
                       bar_format='{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} '
                       '[{elapsed}{postfix}]', file=sys.stderr)

  def postfix(self) -> str:
    """'ETA 12:34, 0.81 s/it, d 1.2 g 3.4 ...' (what the bar shows after its counters)."""
    eta = self.eta.seconds(self.total - self.n)
    rate = '' if eta is None or self.n >= self.total else (
        f', {eta / max(self.total - self.n, 1):.3g} s/it')
    return f'ETA {format_duration(eta)}{rate}{self._losses}'

  def update(self, n: int = 1, metrics: Mapping[str, float] | None = None) -> None:
    self.n += n
    self.eta.step_done(n)
    if metrics:
      self._losses = ' ' + ' '.join(f'{short} {float(metrics[k]):.3g}'
                                    for k, short in self.MAIN.items() if k in metrics)
    if self._bar is None:
      return
    self._bar.set_postfix_str(self.postfix(), refresh=False)
    self._bar.update(n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def metrics_line(step: int, total: int, metrics: Mapping[str, float]) -> str:
  """'step 50/300: d/total=1.23 g/total=4.56 ...' with every term, sorted (train.log and console)."""
  terms = ' '.join(f'{k}={float(v):.4g}' for k, v in sorted(metrics.items()))
  return f'step {step}/{total}: {terms}'


class ConsoleHandler(logging.Handler):
  """stderr through tqdm.write, so log lines never break the progress bar.

  verbosity -1 (default): this package's INFO lines and everyone's warnings; library INFO lines
  (Orbax, absl, grain, jax) are dropped. 0: every INFO line. >= 1: DEBUG as well. Records with
  `extra={'file_only': True}` (e.g. an error the command prints itself) are not shown.
  """

  def __init__(self, verbosity: int = -1):
    super().__init__(logging.DEBUG if verbosity >= 1 else logging.INFO)
    self.verbosity = int(verbosity)
    self.setFormatter(logging.Formatter('%(levelname).1s %(asctime)s %(message)s', '%H:%M:%S'))

  def filter(self, record: logging.LogRecord) -> bool:
    if getattr(record, 'file_only', False):
      return False
    if self.verbosity >= 0 or record.levelno >= logging.WARNING:
      return True
    return record.name == 'ecgan_jax' or record.name.startswith('ecgan_jax.')

  def emit(self, record: logging.LogRecord) -> None:
    try:
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def setup_console(verbosity: int = -1) -> ConsoleHandler:
  """Replaces the root logger's console handlers (absl's included) with one ConsoleHandler; the
  root level becomes INFO (DEBUG at verbosity >= 1) so that file handlers see INFO lines."""
  root = logging.getLogger()
  for h in list(root.handlers):
    if isinstance(h, (ConsoleHandler, logging.StreamHandler)) and not isinstance(
        h, logging.FileHandler):
      root.removeHandler(h)
  try:
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    root.removeHandler(absl_logging.get_absl_handler())
  except ImportError:
    pass
  handler = ConsoleHandler(verbosity)
  root.addHandler(handler)
  root.setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
  return handler


def first_nonfinite(metrics: Mapping[str, Any]) -> str | None:
  """Name of the first loss term (sorted) whose value is NaN or inf, or None."""
  for k in sorted(metrics):
    if not math.isfinite(float(np.asarray(metrics[k]))):
      return k
  return None
