"""Where the seconds before a training step's first result go, in one process with the persistent
compilation cache off: building the initial state (its own compile included, and its program's
trace+lower, compile and run timed apart, so that line covers two init compiles), tracing and
lowering the step, XLA's compile, loading the compiled step back from its serialized form (what a
warm launch does instead of compiling: the executable cache and JAX's compilation cache), the first
and the second call. It also counts the compiled step's fused kernels and copies (XLA:CPU compiles
one kernel per fusion; fewer of them usually, not always, compile sooner). The test suite's
training tests pay these once per program, so this is the number to watch when the suite gets
slow.

  python benchmarks/compile_time.py                   # the trainer tests' micro model (32x32, B8)
  python benchmarks/compile_time.py --config.model.label_generator=b0 --config.train.batch_size=4
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_dot python benchmarks/compile_time.py
  python benchmarks/compile_time.py --devices=8 --config.optim.optimizer=sgd \
      --config.loss.contrastive_gather=maps      # the device-layout tests' 8-device pmap step

The third line runs with XLA's own YNNPACK fusions instead of the commands' default XLA flags
(`_runtime.use_default_xla_flags`). One device by default (pmap over one CPU device, as the
trainer runs on a laptop); --devices=N simulates N CPU devices and splits the batch over them.
"""
import os
import re
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
from jax.experimental import serialize_executable  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

import timing  # noqa: E402
from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax.training import setup  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(REPO, 'configs', 'synthetic.py') + ':tiny', 'Config file[:args].')
# The trainer tests' micro model (tests/training/helpers.MICRO_FLAGS): 32x32 images.
_DEVICES = flags.DEFINE_integer(
    'devices', 1, 'Devices to pmap over (CPU devices simulated with XLA_FLAGS); the batch is split '
    'over them.')
_MICRO = {'dataset.crop_size': 32, 'dataset.load_size': 32, 'dataset.synthetic_size': 64}


def _seconds(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def _kernels(hlo: str) -> str:
  """'N fusions, M copies' in the entry computation of an optimised HLO module's text: XLA:CPU
  emits one kernel per fusion, so their number is a rough guide to its compile time (not a
  measure: fewer, larger fusions can compile slower, docs/performance.md)."""
  entry = hlo[hlo.index('ENTRY'):]
  fusions = len(re.findall(r' fusion\(', entry))
  copies = len(re.findall(r' copy\(', entry))
  return f'{fusions} fusions, {copies} copies'


def main(argv):
  del argv
  n = _DEVICES.value
  if n > 1:  # before any device use, as tests/conftest.py does
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={n}').strip()
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  jax.config.update('jax_enable_compilation_cache', False)
  config = _CONFIG.value
  given = ' '.join(a for a in sys.argv[1:] if a.startswith('--config.'))
  for key, value in _MICRO.items():  # unless given on the command line
    if f'--config.{key}=' not in given:
      section, name = key.split('.')
      config[section][name] = value
  run = setup.build(config, num_devices=n)
  runner = run.runner(parallelism='pmap', devices=jax.local_devices()[:n])
  batch = runner.put_batch(timing.synthetic_batch(config, n, config.train.batch_size // n,
                                                  np.random.default_rng(0)))
  # The init program in its stages (what run.initial_state does before loading weights).
  rng = jax.random.PRNGKey(int(config.train.seed))
  init_lowered, t_init_lower = _seconds(lambda: _runtime.jit_run_once(run._create).lower(rng))
  init_compiled, t_init_compile = _seconds(init_lowered.compile)
  _, t_init_run = _seconds(lambda: init_compiled(rng))
  host_state, t_init = _seconds(run.initial_state)
  state, frozen = runner.put_replicated(host_state), runner.put_replicated(run.frozen())
  lowered, t_lower = _seconds(lambda: runner.lower(state, batch, frozen))
  lines = lowered.as_text().count('\n')
  compiled, t_compile = _seconds(lowered.compile)
  kernels = _kernels(compiled.as_text())
  blob, in_tree, out_tree = serialize_executable.serialize(compiled)
  _, t_load = _seconds(lambda: serialize_executable.deserialize_and_load(
      blob, in_tree, out_tree, execution_devices=jax.local_devices()[:n]))
  (state, _), t_first = _seconds(lambda: compiled(state, batch, frozen))
  _, t_second = _seconds(lambda: compiled(state, batch, frozen))
  print(f'{config.get("ablation", "")} {config.dataset.crop_size}px batch '
        f'{config.train.batch_size} on {n} device(s), G_l {config.model.label_generator}: '
        f'initial state {t_init:.1f} s (its program alone: trace+lower {t_init_lower:.1f} s, '
        f'compile {t_init_compile:.1f} s, run {t_init_run:.1f} s), trace+lower {t_lower:.1f} s '
        f'({lines} StableHLO lines), compile {t_compile:.1f} s ({kernels}), load {t_load:.1f} s '
        f'({len(blob) / 1e6:.0f} MB), first step {t_first:.1f} s, '
        f'second {t_second:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} '
        f'cores; XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}', flush=True)


if __name__ == '__main__':
  app.run(main)
