"""End to end: a checkpoint of the micro config's generator (saved by the test in the trainer's
Orbax layout, no training) -> evaluation.runner.evaluate on 8 simulated devices -> metrics.json, PNGs
named after the label maps, index.html; and the ecgan-evaluate command line (1 device, FID + KID +
mIoU) on the same checkpoint.

The checkpoint holds only the TrainState fields evaluation reads (step, ema_params, g_state): a
full TrainState would compile D, G_l and the optimisers for minutes on a loaded 2-core CI machine.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax import _runtime, configuration
from ecgan_jax.evaluation import evaluators, runner
from ecgan_jax.models import build_generator
from ecgan_jax.training import checkpointing
from tests.training import helpers


def _config():
  config = helpers.micro_config()
  config.eval.metrics = ('miou',)
  config.eval.batch_size = 8
  return config


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  config = _config()
  workdir = str(tmp_path_factory.mktemp('run'))
  h, w = configuration.image_size(config)
  sem = jnp.zeros((1, h, w, configuration.semantic_nc(config)))
  variables = _runtime.jit_run_once(lambda k: build_generator(config).init(
      {'params': k, 'noise': k}, sem, None, train=True))(jax.random.PRNGKey(0))
  params = variables['params']
  rest = {k: v for k, v in variables.items() if k != 'params'}
  ema = jax.tree.map(lambda x: x + 0.01, params)  # EMA differs from the raw weights
  state = {'step': np.int32(3), 'g_params': {'generator': params},
           'ema_params': {'generator': ema}, 'g_state': {'generator': rest}}
  with checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                  async_checkpointing=False) as ckpt:
    ckpt.save(3, state, config=config)
  return config, workdir, ema


def test_evaluate_writes_metrics_images_and_html_with_the_checkpoints_networks(run_dir, caplog):
  config, workdir, ema = run_dir
  given = config.copy_and_resolve_references()
  given.model.ngf = 2 * config.model.ngf  # e.g. a run trained with --config.model.ngf=...
  with caplog.at_level('WARNING'):
    metrics = runner.evaluate(given, workdir, num_examples=5, progress=False)
  assert 'Segmenter SegFormer-tiny: NO weights' in caplog.text  # loud random-weights warning
  assert f'model.ngf {given.model.ngf} -> {config.model.ngf}' in caplog.text
  out = os.path.join(workdir, 'eval', '3')
  record = json.load(open(os.path.join(out, 'metrics.json')))
  assert record['step'] == 3 and record['metrics'] == pytest.approx(metrics)
  assert record['pretrained_networks'] == {'SegmentationEvaluator': False}
  for k in ('miou', 'accuracy', 'miou_real', 'accuracy_real'):
    assert 0 <= metrics[k] <= 1, k
  stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(out, 'images')))
  assert stems == [str(i) for i in range(5)]  # synthetic/val/<i> -> <i>.png; 3 padding rows skipped
  for sub in ('labels', 'real'):
    assert sorted(os.listdir(os.path.join(out, sub))) == sorted(f'{s}.png' for s in stems)
  html = open(os.path.join(out, 'index.html')).read()
  assert html.count('<img ') == 15 and 'images/4.png' in html
  step, variables, saved = runner.restore_ema_generator(workdir)
  assert step == 3 and saved['model']['ngf'] == config.model.ngf
  jax.tree.map(np.testing.assert_array_equal, variables['params'], jax.tree.map(np.asarray, ema))


def test_missing_checkpoint_is_a_one_line_error(tmp_path, run_dir):
  with pytest.raises(FileNotFoundError, match='No checkpoints folder'):
    runner.restore_ema_generator(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'saved steps: \[3\]'):
    runner.restore_ema_generator(run_dir[1], step=5)


def test_unknown_metric_names_the_field():
  config = _config()
  config.eval.metrics = ('fid', 'is')
  with pytest.raises(ValueError, match='config.eval.metrics'):
    evaluators.check_metrics(config)


@pytest.mark.slow  # a child process compiles the generator, the 299x299 Inception and SegFormer
def test_command_line_computes_fid_kid_and_miou_for_a_given_step(run_dir, tmp_path):
  _, workdir, _ = run_dir
  env = helpers.subprocess_env(1, os.environ.get('JAX_COMPILATION_CACHE_DIR',
                                                 str(tmp_path / 'cache')))
  env['PYTHONPATH'] = helpers.REPO
  args = [sys.executable, 'launch/evaluate.py', '--config=configs/synthetic.py:tiny',
          f'--workdir={workdir}', '--step=3', '--num_examples=3',
          "--config.eval.metrics=('fid','kid','miou')", '--config.eval.batch_size=1',
          '--config.eval.write_images=False', *helpers.MICRO_FLAGS]
  proc = subprocess.run(args, cwd=helpers.REPO, env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'FID Inception-v3: NO weights' in proc.stderr
  assert 'eval step 3' in proc.stderr  # the progress bar
  table = dict(line.split() for line in proc.stdout.strip().splitlines())
  record = json.load(open(os.path.join(workdir, 'eval', '3', 'metrics.json')))
  assert record['num_examples'] == 3 and record['metrics']['num_images'] == 3
  for k in ('fid', 'kid', 'miou', 'accuracy'):
    assert np.isfinite(record['metrics'][k]) and float(table[k]) == pytest.approx(
        record['metrics'][k], abs=1e-4)


def test_periodic_evaluator_is_repeatable_and_leaves_the_variables_alone(run_dir):
  """What training calls every train.eval_every steps: same variables -> same metrics (a fresh
  eval iterator each time, accumulators reset), inputs untouched."""
  config, workdir, _ = run_dir
  config = config.copy_and_resolve_references()
  config.eval.train_num_examples = 3
  _, variables, _ = runner.restore_ema_generator(workdir)
  before = jax.tree.map(np.copy, variables)
  evaluate = runner.PeriodicEvaluator(config)
  first, second = evaluate(variables), evaluate(variables)
  assert first == second and 0 <= first['miou'] <= 1
  jax.tree.map(np.testing.assert_array_equal, before, variables)
