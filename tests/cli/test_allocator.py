"""ecgan_jax.cli.allocator: when the commands re-execute themselves with a malloc preloaded."""
import os
import subprocess
import sys
import textwrap

import pytest

from ecgan_jax import cli
from ecgan_jax.cli import allocator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _loaded_library(stem: str) -> str:
  """The path of a shared library this process has loaded (preloading it again is harmless)."""
  with open('/proc/self/maps') as f:
    for line in f:
      path = line.split()[-1]
      if os.path.basename(path).startswith(stem):
        return path
  pytest.skip(f'no {stem} mapped in this process')


pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='LD_PRELOAD is Linux')


def test_auto_preloads_the_first_installed_library_and_quiets_tcmalloc(tmp_path):
  for name in ('libjemalloc.so.2', 'libtcmalloc_minimal.so.4'):
    (tmp_path / name).write_bytes(b'')
  found = allocator.find_library([str(tmp_path)])
  assert found == str(tmp_path / 'libtcmalloc_minimal.so.4')  # tcmalloc before jemalloc
  (tmp_path / 'libtcmalloc_minimal.so.4').unlink()
  found = allocator.find_library([str(tmp_path)])
  assert found == str(tmp_path / 'libjemalloc.so.2')
  assert allocator.find_library([str(tmp_path / 'missing')]) is None

  env = allocator.reexec_environment({allocator.ENV: found, 'LD_PRELOAD': '/x/libfoo.so'})
  assert env['LD_PRELOAD'] == f'{found}:/x/libfoo.so'  # the user's preloads kept, after ours
  assert int(env['TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD']) >= 1 << 40
  again = allocator.reexec_environment(env)
  assert again is None  # the re-executed process goes on


@pytest.mark.parametrize('environ', [
    {allocator.ENV: 'system'},
    {'LD_PRELOAD': '/usr/lib/libjemalloc.so.2'},
    {'LD_PRELOAD': '/opt/conda/lib/libtcmalloc.so.4'},
    {allocator.ENV: '/bin/sh', allocator._DONE: '/bin/sh'},
], ids=['opted-out', 'jemalloc-preloaded', 'tcmalloc-preloaded', 'already-reexecuted'])
def test_no_reexecution_when_opted_out_or_already_preloaded(environ):
  assert allocator.reexec_environment(environ) is None


def test_auto_without_an_installed_library_goes_on(monkeypatch):
  monkeypatch.setattr(allocator, 'library_dirs', lambda: ['/nonexistent'])
  assert allocator.reexec_environment({}) is None


def test_a_missing_library_path_is_a_user_error_naming_the_variable(tmp_path):
  with pytest.raises(FileNotFoundError, match=allocator.ENV):
    allocator.reexec_environment({allocator.ENV: str(tmp_path / 'libnothing.so')})
  res = subprocess.run(
      [sys.executable, '-c', 'from ecgan_jax.cli import allocator; allocator.preload()'],
      cwd=REPO, env={**os.environ, allocator.ENV: str(tmp_path / 'libnothing.so'),
                     'LD_PRELOAD': ''}, capture_output=True, text=True, timeout=60)
  assert res.returncode == 2 and 'error: ECGAN_JAX_MALLOC=' in res.stderr, res.stderr


def test_preload_reexecutes_the_same_process_with_its_arguments_and_the_library(tmp_path):
  library = _loaded_library('libm.so')  # stands in for tcmalloc: the mechanism is the same
  script = tmp_path / 'command.py'
  script.write_text(textwrap.dedent(f"""
      import os, sys
      sys.path.insert(0, {REPO!r})
      print('start', os.getpid(), flush=True)
      from ecgan_jax.cli import allocator
      allocator.preload()
      print('run', os.getpid(), sys.argv[1:], os.environ['LD_PRELOAD'], flush=True)
      """))
  env = {**os.environ, allocator.ENV: library, 'LD_PRELOAD': ''}
  env.pop(allocator._DONE, None)
  res = subprocess.run([sys.executable, '-u', str(script), '--flag=1', 'x y'], env=env,
                       capture_output=True, text=True, timeout=60, check=True)
  start, again, run = res.stdout.splitlines()
  assert start == again  # printed before the re-execution, then again after it: same pid
  assert run.split()[:2] == ['run', start.split()[1]]
  assert "['--flag=1', 'x y']" in run and run.endswith(library)


def test_an_installed_allocator_preloads_for_real_and_stays_quiet_on_large_buffers():
  library = allocator.find_library()
  if library is None:
    pytest.skip('no tcmalloc/jemalloc installed (.ci/run installs libtcmalloc-minimal4)')
  code = ('from ecgan_jax.cli import allocator; allocator.preload(); import numpy as np; '
          'a = np.ones(2**31 // 8 + 1); print(a.sum() > 0, open("/proc/self/maps").read().count('
          f'{os.path.basename(library)!r}) > 0)')
  env = {**os.environ, 'LD_PRELOAD': ''}
  for key in (allocator.ENV, allocator._DONE, 'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD'):
    env.pop(key, None)
  res = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60, check=True)
  assert res.stdout.split() == ['True', 'True']  # a 2 GiB buffer, with the library mapped
  assert res.stderr == ''  # no 'tcmalloc: large alloc' report


def test_console_scripts_and_launch_wrappers_go_through_the_preloading_entry_points():
  import tomllib  # pylint: disable=import-outside-toplevel
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    scripts = tomllib.load(f)['project']['scripts']
  for script, target in scripts.items():
    module, function = target.split(':')
    assert module == 'ecgan_jax.cli' and function == script.replace('-', '_'), (script, target)
    assert callable(getattr(cli, function))
  for name in os.listdir(os.path.join(REPO, 'launch')):
    with open(os.path.join(REPO, 'launch', name)) as f:
      assert f'cli.ecgan_{name[:-3]}()' in f.read(), name
