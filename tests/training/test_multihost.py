"""Multi-host: 2 processes x 4 CPU devices (gloo collectives over 127.0.0.1) reach the same state
as 1 process x 8 devices after the same steps on the same global batches."""
from ecgan_jax.training import setup
from tests.training import helpers
from tests.training.multihost_worker import micro_multihost_config


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  env4 = helpers.subprocess_env(4)  # the session's compile cache: test_step reuses the 1 x 8 step

  # Compiled here once (the session's compile cache), the init program is loaded by the 1 x 8
  # reference. The 2 x 4 pair compile their own: the cache key holds each process's device
  # topology (docs/performance.md, "Test-suite speed").
  config = micro_multihost_config()
  start_state = setup.build(config).initial_state()

  def worker(workdir, pid, nproc, port, env):
    return ['tests/training/multihost_worker.py', workdir, str(pid), str(nproc), str(port)], env

  # The 2 x 4 pair and the 1 x 8 reference run side by side (independent; compiles overlap).
  with helpers.reserved_port() as port:
    outs = helpers.run_together(
        [worker(multi, 0, 2, port, env4), worker(multi, 1, 2, port, env4),
         worker(single, 0, 1, 0, helpers.subprocess_env(8))], str(tmp_path / 'worker'))
  assert 'process 0 done' in outs[0] and 'process 1 done' in outs[1]
  assert 'process 0 done' in outs[2]
  assert 'Devices: 8 global (4 local, process 0 of 2)' in outs[0]
  a, b = helpers.restore_host_state(config, multi, 2), helpers.restore_host_state(config, single, 2)
  assert int(a.step) == int(b.step) == 2
  for name in ('g_params', 'd_params', 'l_params', 'ema_params', 'bank', 'g_state'):
    helpers.assert_updates_close(getattr(a, name), getattr(b, name), getattr(start_state, name),
                                 rel=5e-3)
