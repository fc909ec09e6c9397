"""The README runs as written: its first command (tiny config substituted) in a fresh virtual
environment made by that command itself, then every later command and Python snippet in that
environment, and the installed package from a directory outside the repository.

Cost: one fresh venv per session. pip downloads from the package index (about 1.2 GB without the
pip cache: ~3 min here; ~1 min with a warm cache), plus one tiny training run (4 steps; its compile
is shared through JAX_COMPILATION_CACHE_DIR). Command 2 (the test suite itself) is not run here:
test_ci_runs_the_readme_test_command_word_for_word checks .ci/run executes it.
"""
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, 'README.md')).read()
# Library INFO lines the quiet console must not show (Orbax, absl, grain, jax).
LIBRARY_INFO = ('CheckpointManager', 'barrier_sync', '[process=0]', 'Finished saving',
                'Cleaning up existing temporary', 'checkpoint steps in')


def blocks(lang):
  return re.findall(rf'```{lang}\n(.*?)```', README, re.S)


def commands():
  """Every non-comment line of the README's bash blocks, in order."""
  return [l.strip() for b in blocks('bash') for l in b.splitlines()
          if l.strip() and not l.strip().startswith('#')]


def _tiny(command: str) -> str:
  return command.replace('--config=configs/synthetic.py ', '--config=configs/synthetic.py:tiny ')


def sh(command, cwd, timeout=1800):
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'XLA_FLAGS', 'VIRTUAL_ENV')}
  env['JAX_PLATFORMS'] = 'cpu'
  proc = subprocess.run(['bash', '-c', command], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, f'{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
  return proc


@pytest.fixture(scope='session')
def clone(tmp_path_factory):
  """A copy of the working tree's tracked and unignored files (a fresh clone, no .venv), set up and
  trained by README command 1 with the tiny config SUBSTITUTED for the 300-step demo."""
  root = str(tmp_path_factory.mktemp('readme') / 'ecgan-jax')
  files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
  for f in files:
    if os.path.exists(os.path.join(REPO, f)):
      os.makedirs(os.path.dirname(os.path.join(root, f)), exist_ok=True)
      shutil.copy2(os.path.join(REPO, f), os.path.join(root, f))
  first = commands()[0]
  assert first.startswith('python3.11 -m venv .venv && source .venv/bin/activate && pip install')
  tiny = _tiny(first)
  assert tiny != first
  proc = sh(tiny, root)
  return root, proc.stdout + proc.stderr


def test_first_command_trains_quietly_and_writes_loss_lines(clone):
  root, out = clone
  out = out.split('Successfully installed')[-1]  # what ecgan-train printed (after pip's lines)
  assert 'step 4/4:' in out  # one line per log interval on the console
  for marker in LIBRARY_INFO:
    assert marker not in out, (marker, out[-3000:])
  log = open(os.path.join(root, 'runs/synthetic/train.log')).read()
  assert re.search(r'step 4/4: .*d/total=[-\d.e+]+ .*g/similarity=[-\d.e+]+ .*g/total=', log)
  assert os.path.isdir(os.path.join(root, 'runs/synthetic/checkpoints/4'))


def test_every_later_readme_command_runs_in_the_activated_venv(clone):
  root, _ = clone
  for command in commands()[2:]:  # 0: command 1 (the fixture), 1: the test suite
    if command.startswith('pip install') and ('tensorboard' in command or 'ecgan-demo' in command):
      install, server = command.split(' && ')
      sh(f'source .venv/bin/activate && {install}', root)
      # SUBSTITUTED: a free port; the server is stopped once it says it serves (it runs until
      # interrupted).
      if 'tensorboard' in server:
        _serve_until(f'{server} --port={_free_port()}', ' at http', root)
      else:
        _serve_until(server.replace('--port=8080', f'--port={_free_port()}'),
                     'ecgan-jax demo: http', root)
    else:
      # SUBSTITUTED: commands that name the demo's config read the tiny run command 1 trained.
      sh(f'source .venv/bin/activate && {_tiny(command)}', root)


def _serve_until(server: str, marker: str, root: str) -> None:
  """Starts `server` in the README's venv, waits for a line with `marker`, then stops it."""
  proc = subprocess.Popen(['bash', '-c', f'source .venv/bin/activate && exec {server}'], cwd=root,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  seen = []
  try:
    for line in proc.stdout:  # ends at EOF if the server exits
      seen.append(line)
      if marker in line:
        break
  finally:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
  assert seen and marker in seen[-1], ''.join(seen[-30:])


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def test_python_snippets_run_from_outside_the_repo(clone, tmp_path):
  root, _ = clone
  os.symlink(os.path.join(root, 'runs'), tmp_path / 'runs')  # the README's run folder, seen from here
  for i, snippet in enumerate(blocks('python')):
    path = tmp_path / f'snippet_{i}.py'
    path.write_text(snippet)
    sh(f'{root}/.venv/bin/python {path}', str(tmp_path))


def test_installed_package_and_entry_points_work_outside_the_repo(clone, tmp_path):
  """`pip install .` (not editable) into the session's fresh venv; then import and commands from
  another directory, with the source tree moved away so nothing can come from it."""
  root, _ = clone
  sh('.venv/bin/pip install -q --no-deps --force-reinstall .', root)
  moved = root + '-moved'
  os.rename(root, moved)
  try:
    venv = os.path.join(moved, '.venv', 'bin')
    # The venv's scripts hard-code their interpreter path: call them through its python.
    py = f'{venv}/python'
    out = sh(f'{py} -c "from ecgan_jax import losses; import ecgan_jax; print(ecgan_jax.__file__)"',
             str(tmp_path)).stdout
    assert 'site-packages' in out
    for script in ('ecgan-train', 'ecgan-convert-weights', 'ecgan-prepare-data'):
      shown = subprocess.run([py, f'{venv}/{script}', '--helpshort'], cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=300)
      assert shown.returncode in (0, 1) and 'USAGE' in shown.stdout, shown  # absl exits 1
    err = subprocess.run([py, f'{venv}/ecgan-train', f'--config={moved}/configs/synthetic.py:tiny',
                          '--config.batch_sise=4'], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert err.returncode == 2 and 'did you mean --config.train.batch_size' in err.stderr
  finally:
    os.rename(moved, root)


def test_ci_runs_the_readme_test_command_word_for_word():
  ci = open(os.path.join(REPO, '.ci', 'run')).read()
  assert commands()[1] in ci.splitlines()


def test_pyproject_dependencies_equal_the_requirement_files():
  import tomllib  # pylint: disable=import-outside-toplevel
  project = tomllib.load(open(os.path.join(REPO, 'pyproject.toml'), 'rb'))['project']

  def reqs(name):
    lines = open(os.path.join(REPO, name)).read().splitlines()
    return sorted(l.strip() for l in lines if l.strip() and not l.startswith('#'))

  assert sorted(project['dependencies']) == reqs('requirements.txt')
  assert sorted(project['optional-dependencies']['test']) == reqs('requirements-test.txt')
  assert not any(r.startswith('pytest') for r in reqs('requirements.txt'))
  assert 'tensorboard' in ' '.join(project['optional-dependencies']['viz'])
