"""What the benchmark scripts share: compile once, time repeated calls, read the device's peak,
a synthetic training batch of a config's geometry."""
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
