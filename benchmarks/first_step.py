"""Time from launch to the first finished training step, with a cold and then a warm persistent
compilation cache (the issue's "fast start" numbers).

  python benchmarks/first_step.py                                  # the synthetic demo config
  python benchmarks/first_step.py --config=configs/synthetic.py:tiny --runs=3

Each run is a fresh `python launch/train.py` process in a new workdir; the first uses an empty
cache folder (cold), the later ones the folder the first filled (warm). It prints, per run, the
seconds from process start to the end of step 1 and the process's CPU seconds (user + system of
the child: less sensitive to other load on a shared machine than wall time). The launches pick
their malloc as the commands do (ecgan_jax/cli/allocator.py: tcmalloc when installed);
`ECGAN_JAX_MALLOC=system python benchmarks/first_step.py` times glibc's.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

_CONFIG = flags.DEFINE_string('config', 'configs/synthetic.py', 'Config file[:args] to launch.')
_RUNS = flags.DEFINE_integer('runs', 2, 'Launches: the first cold, the others warm.')
_CACHE = flags.DEFINE_string('cache_dir', None, 'Cache folder (default: a new empty one).')

# Runs launch/train.py in this process and exits right after the first step (the argv after
# `--` is launch/train.py's).
_CHILD = r'''
import os, runpy, sys, time
start = float(os.environ['ECGAN_BENCH_START'])
sys.path.insert(0, os.environ['ECGAN_BENCH_REPO'])
from ecgan_jax.training import trainer
_train = trainer.train
def train(config, workdir, **kwargs):
  def on_step(step):
    print(f'FIRST_STEP {time.time() - start:.2f}', flush=True)
    os._exit(0)
  return _train(config, workdir, on_step=on_step, **kwargs)
trainer.train = train
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def _launch(config: str, cache: str, workdir: str) -> tuple[float, float]:
  env = dict(os.environ, ECGAN_BENCH_REPO=REPO, ECGAN_BENCH_START=repr(time.time()),
             JAX_COMPILATION_CACHE_DIR=cache)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  proc = subprocess.run([sys.executable, '-c', _CHILD, os.path.join(REPO, 'launch', 'train.py'),
                         f'--config={os.path.join(REPO, config)}', f'--workdir={workdir}',
                         ],
                        cwd=REPO, env=env, capture_output=True, text=True)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('FIRST_STEP')]
  if not lines:
    raise SystemExit(f'launch failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return float(lines[0].split()[1]), cpu


def main(argv):
  del argv
  cache = _CACHE.value or tempfile.mkdtemp(prefix='ecgan_jax_cache_')
  from ecgan_jax.cli import allocator  # pylint: disable=import-outside-toplevel
  env = allocator.reexec_environment()
  malloc = env['LD_PRELOAD'].split(':')[0] if env else os.environ.get('LD_PRELOAD') or 'glibc'
  print(f'config {_CONFIG.value}, cache {cache}, malloc {malloc}, '
        f'load average {os.getloadavg()[0]:.1f}')
  for i in range(_RUNS.value):
    with tempfile.TemporaryDirectory() as workdir:
      wall, cpu = _launch(_CONFIG.value, cache, workdir)
    kind = 'cold' if i == 0 and not _CACHE.value else 'warm'
    print(f'run {i + 1} ({kind} cache): first step after {wall:.1f} s wall, {cpu:.1f} s CPU',
          flush=True)


if __name__ == '__main__':
  app.run(main)
