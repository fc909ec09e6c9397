"""Multi-host: 2 processes x 4 CPU devices (gloo collectives over 127.0.0.1) reach the same state
as 1 process x 8 devices after the same steps on the same global batches."""
import socket
import subprocess
import sys


from ecgan_jax.training import setup
from tests.training import helpers
from tests.training.multihost_worker import micro_multihost_config


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
  cache = str(tmp_path / 'cache')
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  port = _free_port()
  env4 = helpers.subprocess_env(4, cache)
  procs = [subprocess.Popen([sys.executable, 'tests/training/multihost_worker.py', multi, str(i),
                             '2', str(port)], cwd=helpers.REPO, env=env4, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-5000:]
  assert 'process 0 done' in outs[0][0] and 'process 1 done' in outs[1][0]
  assert 'Devices: 8 global (4 local, process 0 of 2)' in outs[0][1]
  helpers.run_python(['tests/training/multihost_worker.py', single, '0', '1', str(_free_port())],
                     helpers.subprocess_env(8, cache), timeout=900)
  config = micro_multihost_config()
  a, b = helpers.restore_host_state(config, multi, 2), helpers.restore_host_state(config, single, 2)
  assert int(a.step) == int(b.step) == 2
  start = setup.build(config).initial_state()
  for name in ('g_params', 'd_params', 'l_params', 'ema_params', 'bank', 'g_state'):
    helpers.assert_updates_close(getattr(a, name), getattr(b, name), getattr(start, name),
                                 rel=5e-3)
