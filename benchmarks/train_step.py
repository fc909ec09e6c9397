"""Benchmark of the full training step (D then G update) on 1, 2, 4 and 8 devices.

  python benchmarks/train_step.py --config=configs/synthetic.py
  python benchmarks/train_step.py --config=configs/ade20k.py --config.train.batch_size=8 \
      --devices=1,2,4,8 --steps=10

Per device count it prints: compile time (lower + compile of the pmap/shard_map step), median step
time over --steps timed steps (after one warm-up), images/s (global batch / median step time) and
peak memory: the device allocator's peak_bytes_in_use on GPU/TPU, the process's peak RSS on CPU.
The global batch is --per_device_batch x devices (weak scaling) unless --global_batch is given.
Data is synthetic random labels/images of the config's geometry (no input pipeline in the timing).
On CPU, simulate devices with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_DEVICES = flags.DEFINE_string('devices', '1,2,4,8', 'Comma-separated device counts to try.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per device count.')
_PER_DEVICE = flags.DEFINE_integer('per_device_batch', 1, 'Examples per device (weak scaling).')
_GLOBAL = flags.DEFINE_integer('global_batch', 0, 'Fixed global batch (strong scaling) if > 0.')


def _peak_memory(devices) -> str:
  stats = [d.memory_stats() or {} for d in devices]
  peaks = [s.get('peak_bytes_in_use') for s in stats if s.get('peak_bytes_in_use') is not None]
  if peaks:
    return f'{max(peaks) / 2**30:.2f} GiB/device (allocator peak)'
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  return f'{rss / 2**20:.2f} GiB process RSS (peak)'


def main(argv):
  del argv
  from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from ecgan_jax import configuration  # pylint: disable=import-outside-toplevel
  from ecgan_jax.models import count_tree  # pylint: disable=import-outside-toplevel
  from ecgan_jax.training import setup  # pylint: disable=import-outside-toplevel

  config = _CONFIG.value
  h, w = configuration.image_size(config)
  nc = configuration.num_classes(config)
  run = setup.build(config)
  t0 = time.perf_counter()
  host_state = run.initial_state()
  frozen_host = run.frozen()
  print(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {jax.device_count()} '
        f'devices; config {config.dataset.name} {h}x{w}, {nc} classes, ablation {config.ablation}, '
        f'{config.train.parallelism}, dtype {config.model.dtype}, remat {config.model.remat}; '
        f'init {time.perf_counter() - t0:.1f}s; generator '
        f'{count_tree(host_state.g_params):,} params', flush=True)
  rng = np.random.default_rng(0)
  print(f'{"devices":>7} {"batch":>5} {"compile_s":>9} {"step_ms":>9} {"img/s":>8}  peak memory')
  for n in [int(x) for x in _DEVICES.value.split(',')]:
    if n > jax.local_device_count():
      print(f'{n:>7} skipped: only {jax.local_device_count()} local devices')
      continue
    batch_size = _GLOBAL.value or _PER_DEVICE.value * n
    if batch_size % n:
      print(f'{n:>7} skipped: batch {batch_size} not divisible')
      continue
    runner = run.runner(devices=jax.local_devices()[:n])
    per = batch_size // n
    host_batch = timing.synthetic_batch(config, n, per, rng)
    state = runner.put_replicated(host_state)
    frozen = runner.put_replicated(frozen_host)
    batch = runner.put_batch(host_batch)
    t0 = time.perf_counter()
    runner.lower(state, batch, frozen).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = runner(state, batch, frozen)  # warm-up (also fills the jit cache)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_STEPS.value):
      t0 = time.perf_counter()
      state, metrics = runner(state, batch, frozen)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f'{n:>7} {batch_size:>5} {compile_s:>9.1f} {med * 1e3:>9.1f} {batch_size / med:>8.2f}  '
          f'{_peak_memory(runner.local_devices)}', flush=True)
    del state, frozen, batch


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
