"""What the benchmark scripts share: compile once, time repeated calls, read the device's peak,
a synthetic training batch of a config's geometry, and our config at the side-by-side benchmark's
geometry (`our_config`: vs_pytorch.py's sides, components.py --row)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from ecgan_jax import configuration


def peak_bytes() -> int | None:
  """The first device's allocator peak (GPU/TPU), None where the backend keeps no such count."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def compile_and_time(fn: Callable, args: Sequence[Any], repeats: int) -> tuple[Any, float, float]:
  """jit(fn) compiled for `args`, then one warm-up call and `repeats` timed calls.

  Returns (compiled, compile seconds, median seconds per call)."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return compiled, compile_s, statistics.median(times)


def synthetic_batch(config: Any, devices: int, per_device: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
  """A random host batch of the config's geometry, leaves [devices, per_device, ...]: label ids
  [.., H, W] int32 in [0, classes), image [.., H, W, 3] in [-1, 1], edge [.., H, W, 1] in {-1, 1}
  (about 10% edge pixels), instance [.., H, W, 1] zeros when the config has instance maps."""
  h, w = configuration.image_size(config)
  nc = configuration.num_classes(config)
  n, per = devices, per_device
  batch = {
      'label': rng.integers(0, nc, (n, per, h, w)).astype(np.int32),
      'image': rng.uniform(-1, 1, (n, per, h, w, 3)).astype(np.float32),
      'edge': np.where(rng.uniform(size=(n, per, h, w, 1)) < 0.1, 1.0, -1.0).astype(np.float32)}
  if not config.dataset.no_instance:
    batch['instance'] = np.zeros((n, per, h, w, 1), np.float32)
  return batch


ADE20K_LABEL_NC = 150  # + the don't-care class
# Label space and shape per --dataset, as the reference's own dataset options set them (its
# `--dataset_mode`): ADE20K 150 classes + don't-care, square; Cityscapes 35 ids, width = 2 x
# height and one more upsampling layer ('more', set by the reference's cityscapes mode), with no
# don't-care channel in the reference (`dontcare`) and one in ours (configs/cityscapes.py has
# one: 36 one-hot channels against 35). Instance maps are off on both sides.
DATASETS = {
    'ade20k': {'label_nc': ADE20K_LABEL_NC, 'dontcare': True, 'aspect': 1.0,
               'upsampling': 'normal'},
    'cityscapes': {'label_nc': 35, 'dontcare': False, 'aspect': 2.0, 'upsampling': 'more'},
}


def our_config(ablation: str, size: int, ngf: int, batch: int, label_nc: int = ADE20K_LABEL_NC,
               dataset: str = 'ade20k', dtype: str = 'float32'):
  """configs/<dataset>.py:`ablation` at the benchmark geometry (width `size`), VGG off, no
  instance maps, widths as the released G."""
  import importlib  # pylint: disable=import-outside-toplevel

  c = importlib.import_module(f'configs.{dataset}').get_config(ablation)
  ds = DATASETS[dataset]
  c.dataset.label_nc = label_nc
  c.dataset.no_instance = True
  c.dataset.aspect_ratio = ds['aspect']
  c.model.num_upsampling_layers = ds['upsampling']
  c.model.dtype = dtype
  c.dataset.crop_size = c.dataset.load_size = size
  c.model.ngf = c.model.ndf = ngf
  c.model.feature_channels = ngf        # the released trunk ends at ngf channels
  c.model.branch_widths = (32, 16, 8)   # and its G_e / G_i are 32/16/8 whatever ngf
  c.loss.lambda_vgg = 0.0
  c.train.batch_size = batch
  c.train.parallelism = 'pmap'
  return c
