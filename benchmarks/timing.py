"""What the benchmark scripts share: compile once, time repeated calls, read the device's peak."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import jax


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
