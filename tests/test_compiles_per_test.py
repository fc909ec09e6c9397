"""benchmarks/compiles_per_test.py: XLA compiles per test, counted from JAX's compile events while
pytest runs the named tests (here: two tests written into tmp_path, run in a child process with an
empty compilation cache)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TESTS = '''
import jax
import jax.numpy as jnp


def test_eager():  # add, sin and mul outside jit: a program each
  x = jnp.arange(5.0) + 1.5
  (jnp.sin(x) * 2.5).block_until_ready()


def test_jitted():  # the lambda's program (and jnp.ones's)
  jax.jit(lambda x: jnp.cos(x) * 3.5 + 1.25)(jnp.ones(7)).block_until_ready()
'''


def test_counts_each_tests_compiles_and_prints_both_tables(tmp_path):
  (tmp_path / 'test_sample.py').write_text(TESTS)
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'cache')  # empty: every program compiles
  env['JAX_PLATFORMS'] = 'cpu'
  out = tmp_path / 'counts.json'
  proc = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'compiles_per_test.py'),
                         f'--json={out}', str(tmp_path / 'test_sample.py'), '--rootdir',
                         str(tmp_path)], cwd=str(tmp_path), env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  stats = json.loads(out.read_text())
  eager, jitted = stats['test_sample.py::test_eager'], stats['test_sample.py::test_jitted']
  assert eager[0] >= 3 and jitted[0] >= 1 and eager[0] > jitted[0]
  assert eager[1] > 0 and jitted[1] > 0 and eager[2] >= eager[1]
  assert 'by compile seconds' in proc.stdout and 'by number of compiles' in proc.stdout
  assert 'test_sample.py::test_eager' in proc.stdout
