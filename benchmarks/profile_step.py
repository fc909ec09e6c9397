"""Where one compiled training step spends its time, per network module: a profiler trace of one
step on one device, each XLA op's time summed under the module that emitted it (forward 'F' or
backward 'B'), with the op that cost most.

  python benchmarks/profile_step.py                      # B4 at the small preset of vs_pytorch.py
  python benchmarks/profile_step.py --side=B8 --preset=paper --top=40

The config is `vs_pytorch.our_config` (ADE20K labels, VGG off, the released branch widths). Times
are summed over XLA's worker threads (CPU time, not wall); ops without a source module (layout
copies XLA adds) are grouped under '?'.
"""
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import timing  # noqa: E402
import vs_pytorch  # noqa: E402
from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax.training import setup  # noqa: E402

# --preset (first one), --size, --ngf and --batch are vs_pytorch.py's flags (imported above).
_SIDE = flags.DEFINE_string('side', 'B4', 'Ablation row B1..B8.')
_TOP = flags.DEFINE_integer('top', 25, 'Rows to print.')
_DEPTH = flags.DEFINE_integer('depth', 4, 'Module path components to group by.')

_WRAPPERS = re.compile(r'(jvp|transpose|vmap|remat|checkpoint|pmap|while|body|cond|'
                       r'branch_\d+_fun)\(?')


def module_of(op_name: str, depth: int) -> str:
  """'jit(f)/transpose(jvp(G))/trunk/up_3/norm_0/...' -> 'B G/trunk/up_3/norm_0'."""
  path = _WRAPPERS.sub('', re.sub(r'jit\([^)]*\)/', '', op_name)).replace(')', '')
  parts = [p for p in path.split('/') if p]
  return ('B ' if 'transpose(' in op_name else 'F ') + '/'.join(parts[:depth])


def op_modules(hlo_text: str, depth: int) -> dict[str, str]:
  """Optimised HLO text -> {instruction name: module} from each instruction's op_name."""
  out = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{[^}]*op_name="([^"]*)"', line)
    if m:
      out[m.group(1)] = module_of(m.group(2), depth)
  return out


def main(argv):
  del argv
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  jax.config.update('jax_enable_compilation_cache', False)
  geometry = dict(vs_pytorch.PRESETS[flags.FLAGS.preset[0]])
  for name in ('size', 'ngf', 'batch'):
    geometry[name] = flags.FLAGS[name].value or geometry[name]
  size, ngf, batch_size = geometry['size'], geometry['ngf'], geometry['batch']
  config = vs_pytorch.our_config(_SIDE.value, size, ngf, batch_size)
  run = setup.build(config, num_devices=1)
  runner = run.runner(parallelism='pmap', devices=jax.local_devices()[:1])
  batch = runner.put_batch(timing.synthetic_batch(config, 1, batch_size,
                                                  np.random.default_rng(0)))
  box = {'state': runner.put_replicated(run.initial_state())}
  frozen = runner.put_replicated(run.frozen())
  t0 = time.perf_counter()
  compiled = runner.lower(box['state'], batch, frozen).compile()
  print(f'{_SIDE.value} {size}px ngf {ngf} batch {batch_size}: compile '
        f'{time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f}', flush=True)

  def step():
    box['state'], metrics = compiled(box['state'], batch, frozen)
    jax.block_until_ready((box['state'], metrics))

  step()
  walls = []
  for _ in range(3):
    t0 = time.perf_counter()
    step()
    walls.append(time.perf_counter() - t0)
  print('step wall s: ' + ', '.join(f'{w:.2f}' for w in walls))
  modules = op_modules(compiled.as_text(), _DEPTH.value)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    step()
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True))[-1]
    profile = jax.profiler.ProfileData.from_file(path)
  totals, worst = collections.Counter(), {}
  for plane in profile.planes:
    for line in plane.lines:
      if not line.name.startswith('tf_XLAEigen'):  # XLA:CPU's worker threads
        continue
      for event in line.events:
        if event.name.startswith(('ThunkExecutor', 'Slinky')):
          continue
        module = modules.get(event.name, '?')
        totals[module] += event.duration_ns
        worst[module] = max(worst.get(module, (0, '')), (event.duration_ns, event.name))
  print(f'op time summed over threads: {sum(totals.values()) / 1e9:.2f} s')
  for module, ns in totals.most_common(_TOP.value):
    print(f'{ns / 1e6:9.1f} ms  {module:70s} (largest: {worst[module][1]}, '
          f'{worst[module][0] / 1e6:.0f} ms)')


if __name__ == '__main__':
  app.run(main)
