"""Commands for people: one-line user errors with "did you mean", nothing written before the config
is valid, bad data found before any compile, a quiet console, a useful ETA, clean TensorBoard tags,
milestone checkpoints that survive off-schedule (SIGTERM) saves."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import synthetic
from ecgan_jax.cli import common
from ecgan_jax.training import checkpointing, logging_utils
from tests.data import fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_train(args, tmp_path, env_extra=None, timeout=300):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu', JAX_LOG_COMPILES='1',
             **(env_extra or {}))
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  return subprocess.run([sys.executable, 'launch/train.py', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *needles):
  out = (proc.stdout + proc.stderr).strip()
  assert proc.returncode == 2, out[-3000:]
  last = out.splitlines()[-2:]
  assert 'Traceback' not in out, out[-3000:]
  for n in needles:
    assert any(n in line for line in last), (n, last)


@pytest.mark.parametrize('flag,needles', [
    ('--config.batch_sise=4', ('batch_sise', '--config.train.batch_size')),  # top level
    ('--config.train.batch_sise=4', ('config.train', '--config.train.batch_size')),
    ('--config.train.parallelism=dp', ('config.train.parallelism',)),
    ('--config.model.vgg_checkpoint=/nowhere/vgg19.pth', ('config.model.vgg_checkpoint',
                                                           'ecgan-convert-weights')),
    ('--config.dataset.name=folder', ('config.dataset.root',)),  # no data root
])
def test_user_mistake_is_one_line_naming_the_field_and_writes_nothing(tmp_path, flag, needles):
  workdir = tmp_path / 'run'
  proc = run_train(['--config=configs/synthetic.py:tiny', f'--workdir={workdir}', flag], tmp_path)
  assert_one_line_error(proc, *needles)
  if 'dataset.name' not in flag:
    assert not workdir.exists()  # nothing created before the config is valid
  assert 'Compiling' not in proc.stderr


def test_verbosity_1_shows_the_traceback_of_a_user_error(tmp_path):
  proc = run_train(['--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}/run',
                    '--config.train.parallelism=dp', '--verbosity=1'], tmp_path)
  assert proc.returncode != 0
  assert 'Traceback' in proc.stderr and 'ConfigError: config.train.parallelism' in proc.stderr


@pytest.mark.parametrize('config,needle', [('configs/nope.py', 'configs/nope.py'),
                                            ('configs/synthetic.py:B9', "argument 'B9'")])
def test_missing_or_failing_config_file_is_one_line(tmp_path, config, needle):
  proc = run_train([f'--config={config}', f'--workdir={tmp_path}/run'], tmp_path)
  assert_one_line_error(proc, needle)


def test_bad_file_stops_the_command_before_any_compile_and_goes_to_train_log(tmp_path):
  bad = fx.folder_with_defect(str(tmp_path / 'data'), 'rgb_label')
  workdir = tmp_path / 'run'
  proc = run_train(['--config=configs/synthetic.py:tiny', f'--workdir={workdir}',
                    '--config.dataset.name=folder', f'--config.dataset.root={tmp_path}/data',
                    '--config.dataset.label_nc=4', '--config.dataset.preprocess_mode=fixed',
                    '--config.dataset.crop_size=32', '--config.dataset.load_size=32'], tmp_path)
  assert_one_line_error(proc, os.path.basename(bad), '--config.dataset.on_bad_example=skip')
  # JAX_LOG_COMPILES=1 logs a warning for every compile: none was started.
  assert 'Compiling' not in proc.stderr and 'Finished' not in proc.stderr, proc.stderr[-3000:]
  log = (workdir / 'train.log').read_text()
  assert os.path.basename(bad) in log and 'BadExampleError' in log


def test_unknown_override_suggests_the_closest_field_at_any_level():
  c = synthetic.get_config('tiny')
  assert '--config.train.batch_size' in common.unknown_override(c, 'batch_sise')
  assert '--config.loss.lambda_vgg' in common.unknown_override(c, 'loss.lambda_vggg')
  assert common.unknown_override(c, 'train.batch_size') is None


def test_console_shows_own_info_and_warnings_but_not_library_info():
  quiet, loud = logging_utils.ConsoleHandler(-1), logging_utils.ConsoleHandler(0)
  rec = lambda name, level, **kw: logging.LogRecord(name, level, __file__, 1, 'm', (), None, **kw)
  assert quiet.filter(rec('ecgan_jax.training.trainer', logging.INFO))
  assert quiet.filter(rec('absl', logging.WARNING))
  for library in ('absl', 'orbax', 'jax._src.dispatch', 'grain'):
    assert not quiet.filter(rec(library, logging.INFO))
    assert loud.filter(rec(library, logging.INFO))
  file_only = rec('ecgan_jax.training.trainer', logging.ERROR)
  file_only.file_only = True
  assert not quiet.filter(file_only)


class FakeClock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def test_first_eta_after_the_compile_is_within_2x_of_the_true_remaining_time():
  clock, total = FakeClock(), 100
  progress = logging_utils.Progress(0, total, enabled=False, clock=clock)
  clock.t += 120.0  # step 1: the compile
  progress.update(1)
  assert progress.eta.seconds(total - 1) is None and 'ETA ?' in progress.postfix()
  clock.t += 2.0  # step 2: a real step
  progress.update(1)
  true_remaining = 2.0 * (total - 2)
  first = progress.eta.seconds(total - 2)
  assert true_remaining / 2 <= first <= 2 * true_remaining
  assert 'ETA 03:16' in progress.postfix()  # 98 steps x 2 s
  naive = (clock.t / 2) * (total - 2)  # what counting the compile as a step would show
  assert naive > 2 * true_remaining


def test_bar_shows_the_main_terms_including_similarity_and_feature_matching():
  progress = logging_utils.Progress(0, 10, enabled=False)
  progress.update(1, {'d/total': 1.0, 'g/total': 2.0, 'g/similarity': 0.5, 'g/feat': 3.0,
                      'g/contrastive': 4.0, 'g/gan_edge': 9.0})
  text = progress.postfix()
  assert 'sim 0.5' in text and 'feat 3' in text and 'contr 4' in text and 'gan_edge' not in text


def test_tensorboard_tags_are_cleaned_so_tensorboardx_never_warns(tmp_path, caplog):
  writer = logging_utils.MetricWriter(str(tmp_path))
  with caplog.at_level(logging.DEBUG):
    writer.image(0, 'samples/label|edge|fake_edge|coarse|final|real', np.zeros((4, 4, 3), np.uint8))
    writer.scalars(0, {"eval/l1 I''": 1.0})
    writer.close()
  assert 'illegal' not in caplog.text.lower()
  assert logging_utils.clean_tag('samples/a|b c') == 'samples/a_b_c'


def test_metrics_line_has_every_term():
  line = logging_utils.metrics_line(5, 10, {'g/total': 1.5, 'd/total': 0.25, 'g/similarity': 2})
  assert line == 'step 5/10: d/total=0.25 g/similarity=2 g/total=1.5'


def test_milestone_checkpoints_survive_off_schedule_saves(tmp_path):
  tree = {'w': np.arange(3, dtype=np.float32)}
  with checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, keep_every=4,
                                  async_checkpointing=False) as ckpt:
    for step in (2, 4, 6, 7, 8, 9, 10, 11, 13):  # 7, 9, 11, 13: SIGTERM saves between milestones
      ckpt.save(step, tree)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [4, 8, 11, 13]  # milestones 4 and 8 + the last two
