"""The training loop end to end (launch/train.py in child processes on 2 simulated CPU devices):
exact resume after SIGKILL, SIGTERM saves and exits, resuming on another device count, NaN halt,
sample grids and TensorBoard files, CLI errors. Children share the session's persistent compile
cache (tests/conftest.py), so the identical step program compiles once per run."""
import json
import os
import re
import signal

import numpy as np
import pytest
from PIL import Image

from ecgan_jax.evaluation import samples
from tests.training import helpers


def _latest_step(workdir):
  steps = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  return max(steps) if steps else None


def _data_state(workdir, step):
  folder = os.path.join(workdir, 'checkpoints', str(step), 'data')
  (name,) = [f for f in os.listdir(folder) if f.endswith('.json')]
  with open(os.path.join(folder, name)) as f:
    return json.load(f)


# Periodic evaluation (mIoU with a random SegFormer on 2 validation images) every 2 steps: it must
# reach TensorBoard and must not disturb the bit-exact resume.
EVAL_FLAGS = ('--config.train.eval_every=2', "--config.eval.metrics=('miou',)",
              '--config.eval.train_num_examples=2', '--config.eval.batch_size=2')


def test_sigkill_then_resume_equals_uninterrupted_run_bit_for_bit(tmp_path):
  env = helpers.subprocess_env(2)
  ref, run = str(tmp_path / 'ref'), str(tmp_path / 'run')
  # 4 steps, checkpoints and evaluations at 2 and 4
  first = helpers.run_python(helpers.train_args(ref, extra=EVAL_FLAGS), env)
  assert first.stderr.count('evaluation on 2 validation images: accuracy') == 2, first.stderr[-3000:]
  events = [os.path.join(ref, 'tensorboard', f) for f in os.listdir(os.path.join(ref, 'tensorboard'))]
  assert any(b'eval/miou' in open(f, 'rb').read() for f in events)
  killed = helpers.run_python(['tests/training/kill_after.py', '3', '2',
                               *helpers.train_args(run, extra=EVAL_FLAGS)[1:]], env, check=False)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert 'KILLING at step 3 with SIGKILL' in killed.stdout
  assert _latest_step(run) == 2  # step 3 was computed but never saved
  resumed = helpers.run_python(helpers.train_args(run, extra=EVAL_FLAGS), env)
  assert 'Resumed from step 2' in resumed.stderr
  config = helpers.micro_config()
  a, b = helpers.restore_host_state(config, ref, 4), helpers.restore_host_state(config, run, 4)
  assert int(a.step) == int(b.step) == 4
  helpers.assert_trees_equal(a, b, exact=True)  # params, opt states, EMA, bank, batch stats, rng
  assert _data_state(ref, 4) == _data_state(run, 4)
  assert _data_state(ref, 2) != _data_state(ref, 4)


def test_sigterm_saves_exits_cleanly_and_resumes_on_other_device_count(tmp_path):
  run = str(tmp_path / 'run')
  # SIGTERM arrives after step 2; the loop notices it in step 3 (not a checkpoint step), saves
  # and returns: exit status 0.
  stopped = helpers.run_python(['tests/training/kill_after.py', '--signal=TERM', '2', '0',
                                *helpers.train_args(run)[1:]],
                               helpers.subprocess_env(2))
  assert 'Stopped by signal after step 3' in stopped.stderr
  assert _latest_step(run) == 3
  # Same run on 1 device (the checkpoint holds unreplicated host arrays), with sample grids.
  resumed = helpers.run_python(helpers.train_args(run, extra=('--config.train.sample_every=2',)),
                               helpers.subprocess_env(1))
  assert 'Resumed from step 3' in resumed.stderr
  assert _latest_step(run) == 4
  assert re.search(r'Devices: 1 global', resumed.stderr)
  grid = np.asarray(Image.open(os.path.join(run, 'samples', 'step_0000004.png')))  # final step
  # 4 examples x (label | edge | I'_e | I' | I_g | I'' | real)
  assert grid.shape == (4 * 34 + 2, len(samples.GRID_COLUMNS) * 34 + 2, 3) == (138, 240, 3)
  assert grid[2:34, 2:34].std() > 0  # a colourised label map, not a blank tile
  events = os.listdir(os.path.join(run, 'tensorboard'))
  assert any(e.startswith('events.out.tfevents') for e in events)
  log = open(os.path.join(run, 'train.log')).read()
  assert 'RANDOMLY INITIALISED VGG19' in log and 'TRAINED ONLINE' in log
  assert re.search(r'step 4/4: .*d/total=[-\d.e+]+ .*g/total=[-\d.e+]+', log)  # loss values
  assert 'CheckpointManager' not in resumed.stderr  # no Orbax INFO lines on the console


def test_nonfinite_loss_stops_naming_step_and_term_keeping_last_good_checkpoint(tmp_path):
  run = str(tmp_path / 'run')
  proc = helpers.run_python(['tests/training/nan_run.py', run, '3'],
                            helpers.subprocess_env(2), check=False)
  assert proc.returncode != 0
  assert re.search(r'FloatingPointError: Non-finite loss at step 3: [dg]/\w+ = nan', proc.stderr)
  assert _latest_step(run) == 2


@pytest.mark.parametrize('flag,message', [
    ('--config.train.batch_sizee=4', 'batch_sizee'),
    ('--config.train.parallelism=dp', 'config.train.parallelism'),
    ('--config.train.batch_size=7', 'config.train.batch_size=7'),
])
def test_cli_rejects_a_wrong_field_with_a_clear_message(tmp_path, flag, message):
  proc = helpers.run_python(helpers.train_args(str(tmp_path / 'run'), extra=(flag,)),
                            helpers.subprocess_env(2), check=False, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr


def test_step_and_sample_compiled_ahead_from_shapes_key_as_their_real_arguments(tmp_path,
                                                                                monkeypatch):
  """The trainer starts the step's and the sample grid's compiles from shapes before the state
  exists (trainer._start); their executable-cache keys must be the ones the real arguments give,
  or a warm launch would compile again. Compares the keys only (nothing compiles the step)."""
  import types  # pylint: disable=import-outside-toplevel

  from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
  from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  from ecgan_jax.training import checkpointing, setup, trainer  # pylint: disable=import-outside-toplevel
  config = helpers.micro_config()
  run = setup.build(config, executables=_runtime.ExecutableCache(str(tmp_path / 'exe')))
  runner = run.runner()
  ahead = {}
  monkeypatch.setattr(runner, 'compile_ahead', lambda *args: ahead.setdefault('step', args))
  sampler = types.SimpleNamespace(compile_ahead=lambda *args: ahead.setdefault('sample', args))
  data = pipeline.make_train_iterator(config, runner.num_local_devices)
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), async_checkpointing=False)
  try:
    frozen = runner.put_replicated(run.frozen())
    host_state, batches = trainer._start(run, ckpt, runner, types.SimpleNamespace(sampler=sampler),
                                         frozen, data, str(tmp_path))
    first = next(batches)
  finally:
    ckpt.close()
    data.close()
  key = _runtime._arguments_key  # pylint: disable=protected-access
  state = runner.put_replicated(host_state)
  assert key(ahead['step']) == key((state, runner.put_batch(first), frozen))
  host = runner.get_replicated({'ema': state.ema_params, 'g_state': state.g_state})
  assert key(ahead['sample']) == key((host['ema'], host['g_state']))
