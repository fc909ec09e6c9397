"""Trains the micro config on a pipeline whose images turn to NaN from batch POISON_FROM on.

  python tests/training/nan_run.py WORKDIR POISON_FROM
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import helpers  # noqa: E402
from ecgan_jax.data import pipeline  # noqa: E402
from ecgan_jax.training import trainer  # noqa: E402


class PoisonFrom:
  """Map over host batches: the images of batch number `first` (1-based) and later become NaN."""

  def __init__(self, first: int):
    self.first, self.seen = first, 0

  def __call__(self, batch):
    self.seen += 1
    if self.seen >= self.first:
      batch = dict(batch, image=np.full_like(batch['image'], np.nan))
    return batch


if __name__ == '__main__':
  workdir, first = sys.argv[1], int(sys.argv[2])
  config = helpers.micro_config()
  ds = pipeline.build_train_dataset(config, jax.local_device_count()).map(PoisonFrom(first))
  trainer.train(config, workdir, train_iterator=iter(ds))
