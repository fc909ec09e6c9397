"""`evaluate(config, workdir, step)`: generate the validation split with the EMA generator of a
checkpoint, compute config.eval.metrics and write

  workdir/eval/<step>/metrics.json   the metrics (plus step, number of images, which networks had
                                     real weights)
  workdir/eval/<step>/images/<stem>.png   I'' for every label map (file stem of the label map)
  workdir/eval/<step>/{labels,real}/<stem>.png   colourised label map and real image
  workdir/eval/<step>/index.html     label | real | I'' per row (SPADE's results page)

The checkpoint is read here with Orbax directly (only the EMA generator and its state are taken),
so evaluation does not import training/.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import configuration
from ecgan_jax.evaluation import evaluators as evaluators_lib
from ecgan_jax.evaluation import samples
from ecgan_jax.models import build_generator
from ecgan_jax.models.generate import generate

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ checkpoint
def restore_ema_generator(workdir: str, step: int | None = None) -> tuple[int, dict, dict | None]:
  """(step, {'params': EMA generator params, **generator state}, the config saved with the step as
  a plain dict or None) from workdir/checkpoints (the latest step unless `step`), as host numpy
  arrays; FileNotFoundError naming the folder."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'No checkpoints folder {directory} (train first, or pass the run\'s '
                            '--workdir)')
  manager = ocp.CheckpointManager(directory, item_names=('state', 'config'),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise FileNotFoundError(f'No finished checkpoint in {directory}')
    step = steps[-1] if step is None else int(step)
    if step not in steps:
      raise FileNotFoundError(f'No checkpoint for step {step} in {directory}; saved steps: {steps}')
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
    try:
      saved_config = manager.restore(step, args=ocp.args.Composite(
          config=ocp.args.JsonRestore()))['config']
    except KeyError:  # saved without a config
      saved_config = None
  finally:
    manager.close()
  host = jax.tree.map(np.asarray, state)
  variables = {'params': host['ema_params']['generator']}
  variables.update(host['g_state']['generator'])
  return step, variables, saved_config


# ----------------------------------------------------------------------------------- generation
class _GeneratorOnly(NamedTuple):
  """The model bundle `models.generate.generate` needs, without a style encoder: a VAE model then
  samples z ~ N(0, 1), as SPADE does at test time."""
  generator: Any
  style_encoder: Any = None


def make_generate_fn(config: Any) -> Callable[..., dict]:
  """(variables, label [B, H, W], instance [B, H, W, 1] | None, key) -> {'image', 'coarse_image',
  'edge'} of the generator in inference mode (`models.generate.generate`, the one generator call);
  vae / noise3d draw one latent per image from key. variables: {'params', **generator state}."""
  models = _GeneratorOnly(build_generator(config))

  def generate_images(variables, label, instance, key):
    params = {'generator': variables['params']}
    state = {'generator': {k: v for k, v in variables.items() if k != 'params'}}
    out, _ = generate(models, params, state, label, instance, key=key, train=False)
    return {k: out[k] for k in ('image', 'coarse_image', 'edge') if out.get(k) is not None}
  return generate_images


def make_predict_fn(config: Any, variables: dict) -> evaluators_lib.PredictFn:
  """A pmapped host batch [D, b, ...] -> {'image': I'' [D, b, H, W, 3]} over the local devices;
  every call draws fresh latents (multimodal) from a seeded key."""
  generate = make_generate_fn(config)
  replicated = evaluators_lib.replicate(variables)
  axis = evaluators_lib.AXIS

  def device_fn(v, label, instance, key):
    key = jax.random.fold_in(key, jax.lax.axis_index(axis))
    return generate(v, label, instance, key)

  pmapped = jax.pmap(device_fn, axis_name=axis, in_axes=(0, 0, 0, None))
  state = {'key': jax.random.fold_in(jax.random.PRNGKey(int(config.eval.seed)),
                                     jax.process_index()), 'count': 0}

  def predict(batch: Mapping[str, np.ndarray]) -> dict:
    key = jax.random.fold_in(state['key'], state['count'])
    state['count'] += 1
    return pmapped(replicated, batch['label'], batch.get('instance'), key)
  return predict


def make_sample_fn(config: Any, variables: dict) -> Callable:
  """(labels [S, H, W], key) -> I'' [S, H, W, 3], one latent per row (LPIPS diversity)."""
  generate = make_generate_fn(config)
  v = jax.tree.map(jnp.asarray, variables)
  if not configuration.semantic_nc(config) == configuration.num_classes(config):
    raise configuration.ConfigError('LPIPS diversity does not support instance-boundary inputs '
                                    '(config.dataset.no_instance=False) yet')
  return lambda labels, key: generate(v, labels, None, key)['image']


# -------------------------------------------------------------------------------------- output
def format_table(metrics: Mapping[str, float]) -> str:
  """Two-column text table of the metrics, main ones first."""
  main = ('fid', 'kid', 'miou', 'accuracy', 'small_object_miou', 'lpips_diversity')
  keys = [k for k in main if k in metrics] + sorted(k for k in metrics if k not in main)
  width = max(len(k) for k in keys) if keys else 6
  return '\n'.join(f'{k:<{width}}  {metrics[k]:.4f}' for k in keys)


class _ImageWriter:
  """Writes I'', the colourised label and the real image of every valid example (process 0 writes
  its own shard's examples; every process writes its own in multi-host runs)."""

  def __init__(self, folder: str, num_classes: int):
    self.folder, self.num_classes, self.rows = folder, num_classes, []
    self._stems: set[str] = set()

  def _stem(self, key: str) -> str:
    stem = os.path.basename(str(key)) or 'example'
    if stem in self._stems:  # basenames can repeat across sub-folders
      stem = str(key).replace('/', '_')
    self._stems.add(stem)
    return stem

  def __call__(self, batch, outputs):
    valid = np.asarray(batch['valid']).reshape(-1)
    keys = np.asarray(batch['key']).reshape(-1)
    fake = np.asarray(outputs['image']).reshape((-1,) + outputs['image'].shape[2:])
    real = np.asarray(batch['image']).reshape(fake.shape)
    label = np.asarray(batch['label']).reshape(fake.shape[:3])
    for i in np.flatnonzero(valid):
      stem = self._stem(keys[i])
      samples.save_png(os.path.join(self.folder, 'images', f'{stem}.png'), samples.to_uint8(fake[i]))
      samples.save_png(os.path.join(self.folder, 'real', f'{stem}.png'), samples.to_uint8(real[i]))
      samples.save_png(os.path.join(self.folder, 'labels', f'{stem}.png'),
                       samples.colorize_labels(label[i], self.num_classes))
      self.rows.append({'name': stem, 'label': f'labels/{stem}.png', 'real': f'real/{stem}.png',
                        "I''": f'images/{stem}.png'})


class PeriodicEvaluator:
  """Evaluation during training: the image metrics of config.eval.metrics (fid, kid, miou) of given
  generator variables on the first config.eval.train_num_examples validation images.

  Networks are built once; each call makes a fresh eval iterator, so it reads nothing from and
  changes nothing in the training state, its RNG or the training data iterator (a resumed run
  stays bit-exact). Every process must call it (the device work is pmapped). LPIPS diversity is
  left to launch/evaluate.py (20 generations per label map)."""

  def __init__(self, config: Any):
    self.config = config
    self.num_examples = int(config.eval.train_num_examples)
    self.evaluators = evaluators_lib.build_evaluators(config)

  def __call__(self, variables: dict) -> dict[str, float]:
    """variables: {'params': EMA generator params, **generator state} (host or device arrays)."""
    from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
    batches = pipeline.make_eval_iterator(self.config, jax.local_device_count(),
                                          num_examples=self.num_examples,
                                          batch_size=int(self.config.eval.batch_size))
    try:
      return evaluators_lib.evaluate_all(self.evaluators, make_predict_fn(self.config, variables),
                                         batches)
    finally:
      if hasattr(batches, 'close'):
        batches.close()


def evaluate(config: Any, workdir: str, step: int | None = None, *,
             num_examples: int | None = None, progress: bool = True) -> dict[str, float]:
  """Evaluates the checkpoint of `step` (latest by default) in `workdir`; returns the metrics and
  writes them (and, if config.eval.write_images, the images and index.html) to
  workdir/eval/<step>/."""
  from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  metrics_wanted = evaluators_lib.check_metrics(config)
  step, variables, trained = restore_ema_generator(workdir, step)
  config = configuration.with_trained_networks(config, trained, f'step {step} of {workdir}')
  out_dir = os.path.join(workdir, 'eval', str(step))
  is_main = jax.process_index() == 0
  log.info('Evaluating step %d of %s: %s', step, workdir, ', '.join(metrics_wanted))
  num_examples = num_examples if num_examples is not None else config.eval.get('num_examples')
  num_devices = jax.local_device_count()
  batch_size = int(config.eval.batch_size)
  if batch_size % jax.device_count():
    raise configuration.ConfigError(f'config.eval.batch_size={batch_size} is not divisible by the '
                                    f'{jax.device_count()} devices')
  evaluators = evaluators_lib.build_evaluators(config, stats_dir=os.path.join(workdir, 'eval'))
  writer = (_ImageWriter(out_dir, configuration.num_classes(config))
            if config.eval.get('write_images', True) else None)
  batches = pipeline.make_eval_iterator(config, num_devices, num_examples=num_examples,
                                        batch_size=batch_size, with_keys=True)
  total = pipeline.eval_num_batches(config, num_devices, num_examples=num_examples,
                                    batch_size=batch_size)
  bar = None
  if progress and is_main:
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    bar = tqdm(total=total, unit='batch', desc=f'eval step {step}', dynamic_ncols=True)
  predict = make_predict_fn(config, variables)
  strip = lambda b: {k: v for k, v in b.items() if k != 'key'}  # noqa: E731  (strings stay on host)

  def on_batch(batch, outputs):
    if writer is not None:
      writer(batch, outputs)
    if bar is not None:
      bar.update(1)

  label_maps = []
  try:
    def stream():
      for batch in batches:
        if 'lpips_diversity' in metrics_wanted:
          label_maps.append(strip(batch))
        yield batch
    metrics = evaluators_lib.evaluate_all(evaluators, lambda b: predict(strip(b)), stream(),
                                          on_batch)
  finally:
    if bar is not None:
      bar.close()
    if hasattr(batches, 'close'):
      batches.close()
  if 'lpips_diversity' in metrics_wanted:
    div = evaluators_lib.DiversityEvaluator(config, make_sample_fn(config, variables))
    metrics.update(evaluators_lib.run(div, lambda b: {}, label_maps))
  pretrained = {type(e).__name__: bool(getattr(e, 'pretrained', False)) for e in evaluators}
  if is_main:
    os.makedirs(out_dir, exist_ok=True)
    record = {'step': step, 'metrics': metrics, 'pretrained_networks': pretrained,
              'num_examples': num_examples, 'dataset': config.dataset.name}
    with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
      json.dump(record, f, indent=2, sort_keys=True, default=float)
    if writer is not None:
      samples.write_results_page(os.path.join(out_dir, 'index.html'),
                                 f'{config.dataset.name}: step {step}', writer.rows,
                                 metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
    log.info('Evaluation of step %d written to %s', step, out_dir)
  return metrics
