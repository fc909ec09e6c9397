"""The training loop: state, data, the parallel step, checkpoints, logging, samples.

`train(config, workdir)` trains on every local device (and every process of a multi-host run),
resumes automatically from `workdir/checkpoints`, saves every config.train.checkpoint_every steps
(async, keeping the last config.train.keep_checkpoints), saves and returns on SIGTERM/SIGINT, stops
with FloatingPointError naming the step and the loss term on a NaN/inf loss (the last good checkpoint
stays the newest), and writes:
  workdir/train.log            the log (process 0)
  workdir/tensorboard/         scalars (losses, gradient/parameter norms, learning rates, it/s) and
                               sample grids (tensorboardX)
  workdir/samples/step_N.png   colourised label | real edge | I'_e | I' | I'' | real (EMA generator)
  workdir/checkpoints/N/       state, data iterator position, config
"""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from ecgan_jax import configuration
from ecgan_jax.evaluation import samples
from ecgan_jax.models import check_model_config
from ecgan_jax.models import semantics as semantics_lib
from ecgan_jax.training import checkpointing, logging_utils, parallel
from ecgan_jax.training import state as state_lib
from ecgan_jax.training import step as step_lib

log = logging.getLogger(__name__)
NUM_SAMPLES = 4


def check_config(config: Any, num_devices: int) -> None:
  """validate_config + model checks + training checks; ConfigError names the field."""
  check_model_config(config)
  t = config.train
  if t.batch_size % num_devices:
    raise configuration.ConfigError(
        f'config.train.batch_size={t.batch_size} is not divisible by the {num_devices} devices')
  for name in ('num_steps', 'log_every', 'checkpoint_every', 'keep_checkpoints'):
    if int(t[name]) < 1:
      raise configuration.ConfigError(f'config.train.{name}={t[name]} must be >= 1')
  if config.optim.get('optimizer', 'adam') not in state_lib.OPTIMIZERS:
    raise configuration.ConfigError(
        f'config.optim.optimizer={config.optim.optimizer!r} is not one of {list(state_lib.OPTIMIZERS)}')
  if config.loss.get('contrastive_gather', 'anchors') not in step_lib.GATHER_MODES:
    raise configuration.ConfigError(
        f'config.loss.contrastive_gather={config.loss.contrastive_gather!r} is not one of '
        f'{list(step_lib.GATHER_MODES)}')


def _setup_file_logging(workdir: str) -> logging.Handler | None:
  if jax.process_index() != 0:
    return None
  handler = logging.FileHandler(os.path.join(workdir, 'train.log'))
  handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  # Orbax logs every save step at INFO through absl; keep only its warnings in train.log.
  handler.addFilter(lambda r: r.name != 'absl' or r.levelno >= logging.WARNING)
  root = logging.getLogger()
  root.addHandler(handler)
  if root.level > logging.INFO or root.level == logging.NOTSET:
    root.setLevel(logging.INFO)
  return handler


def load_frozen(config: Any, models: state_lib.Models) -> dict:
  """Frozen networks: {'vgg': VGG19 params} from config.model.vgg_checkpoint, else random init
  (seeded, so a resumed run gets the same weights), logged as such."""
  path = config.model.get('vgg_checkpoint')
  if path:
    from ecgan_jax.convert import load_vgg19_params  # pylint: disable=import-outside-toplevel
    log.info('VGG19 perceptual loss: pretrained weights from %s', path)
    return {'vgg': load_vgg19_params(path)['params']}
  log.warning('VGG19 perceptual loss: NO weights given (config.model.vgg_checkpoint); using a '
              'RANDOMLY INITIALISED VGG19 (fixed seed). Fine for tests and the demo, not for '
              'reproducing the paper.')
  rng = jax.random.fold_in(jax.random.PRNGKey(int(config.train.seed)), 0x76676731)
  params = jax.jit(lambda k: models.vgg.init(k, jnp.zeros((1, 32, 32, 3)))['params'])(rng)
  return {'vgg': params}


def initial_state(config: Any, init_models: state_lib.Models,
                  optimizers: state_lib.Optimizers) -> state_lib.TrainState:
  """A fresh TrainState on the host; the label generator loaded from its checkpoint if given."""
  rng = jax.random.PRNGKey(int(config.train.seed))
  create = functools.partial(state_lib.create_train_state, config, models=init_models,
                             optimizers=optimizers)
  state = checkpointing.to_host(jax.jit(create)(rng))
  path = config.model.get('label_generator_checkpoint')
  if path and config.loss.use_similarity:
    from ecgan_jax.convert import load_segformer_params  # pylint: disable=import-outside-toplevel
    variables = load_segformer_params(path, config.model.label_generator)
    params = variables['params']
    l_state = {k: v for k, v in variables.items() if k != 'params'}
    want = jax.tree.map(np.shape, (state.l_params, state.l_state))
    got = jax.tree.map(np.shape, (params, l_state))
    if want != got:
      raise ValueError(f'Label generator checkpoint {path!r} does not fit SegFormer-'
                       f'{config.model.label_generator} with {configuration.num_classes(config)} '
                       'labels (shapes differ)')
    state = state.replace(l_params=checkpointing.to_host(params),
                          l_state=checkpointing.to_host(l_state))
  return state


def _log_setup(config: Any, state: state_lib.TrainState, runner: parallel.ParallelStep) -> None:
  if state_lib.label_generator_trained_online(config):
    if config.loss.use_similarity:
      log.warning('Label generator G_l: NO converted checkpoint (config.model.label_generator_'
                  'checkpoint); SegFormer-%s is randomly initialised and TRAINED ONLINE on real '
                  '(image, label) pairs with cross-entropy. The similarity loss is only as good as '
                  'this online segmenter.', config.model.label_generator)
  else:
    log.info('Label generator G_l: frozen SegFormer-%s from %s', config.model.label_generator,
             config.model.label_generator_checkpoint)
  log.info('Parameters: generator %s, discriminator %s, label generator %s',
           f'{state_lib.count_params(state.g_params):,}', f'{state_lib.count_params(state.d_params):,}',
           f'{state_lib.count_params(state.l_params):,}')
  log.info('Devices: %d global (%d local, process %d of %d), parallelism %s, global batch %d',
           runner.num_devices, runner.num_local_devices, jax.process_index(), jax.process_count(),
           runner.parallelism, config.train.batch_size)


class Sampler:
  """Fixed validation examples -> grid images and reconstruction error of I'' (one device)."""

  def __init__(self, config: Any, init_models: state_lib.Models):
    from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
    n = NUM_SAMPLES
    it = pipeline.make_eval_iterator(config, 1, process_index=0, process_count=1, num_examples=n,
                                     batch_size=n)
    batch = next(iter(it))
    if hasattr(it, 'close'):
      it.close()
    self.batch = {k: np.asarray(v)[0] for k, v in batch.items()}  # drop the device axis
    self.num_classes = configuration.num_classes(config)
    generator = init_models.generator
    num_classes = self.num_classes
    multimodal = config.model.multimodal
    z_dim = int(config.model.z_dim)

    @jax.jit
    def generate(g_params, g_state, label, instance, key):
      sem = semantics_lib.one_hot_semantics(label, num_classes, instance)
      z = None
      if multimodal == 'vae':
        z = jax.random.normal(key, (label.shape[0], z_dim))
      out = generator.apply({'params': g_params['generator'], **g_state['generator']}, sem, z,
                            train=False, rngs={'noise': key})
      return {k: out[k] for k in ('image', 'coarse_image', 'edge')}

    self._generate = generate

  def __call__(self, params: Any, g_state: Any) -> tuple[np.ndarray, dict[str, float]]:
    b = self.batch
    out = jax.device_get(self._generate(params, g_state, b['label'], b.get('instance'),
                                        jax.random.PRNGKey(0)))
    grid = samples.sample_grid(b['label'], b['edge'], out['edge'], out['coarse_image'],
                                     out['image'], b['image'], self.num_classes)
    l1 = {'eval/l1_final': float(np.mean(np.abs(out['image'] - b['image']))),
          'eval/l1_coarse': float(np.mean(np.abs(out['coarse_image'] - b['image'])))}
    return grid, l1


def _any_process(flag: bool) -> bool:
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def train(config: Any, workdir: str, *, train_iterator: Iterator | None = None,
          on_step: Callable[[int], None] | None = None) -> dict[str, float]:
  """Trains to config.train.num_steps (resuming from `workdir`); returns the last step's metrics.

  `train_iterator`: optional grain iterator of host batches [D_local, B/D, ...] replacing the
  configured pipeline (it is checkpointed the same way). `on_step(step)` is called after every
  step's bookkeeping (checkpoint included).
  """
  os.makedirs(workdir, exist_ok=True)
  file_handler = _setup_file_logging(workdir)
  parallelism = config.train.parallelism
  num_devices = jax.device_count()
  check_config(config, num_devices)
  is_main = jax.process_index() == 0

  init_models = state_lib.build_models(config, axis_name=None)
  models = state_lib.build_models(config, axis_name=parallel.AXIS)
  optimizers = state_lib.make_optimizers(config)
  runner = parallel.ParallelStep(step_lib.make_train_step(config, models, optimizers), parallelism)
  if train_iterator is None:
    from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
    train_iterator = pipeline.make_train_iterator(config, runner.num_local_devices)

  ckpt = checkpointing.Checkpointer(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      max_to_keep=int(config.train.keep_checkpoints),
      async_checkpointing=bool(config.train.async_checkpointing))
  writer = logging_utils.MetricWriter(os.path.join(workdir, 'tensorboard'), enabled=is_main)
  progress = None
  try:
    abstract = jax.eval_shape(functools.partial(
        state_lib.create_train_state, config, models=init_models, optimizers=optimizers),
        jax.random.PRNGKey(0))
    latest = ckpt.latest_step()
    if latest is not None:
      host_state = ckpt.restore(abstract, data_iterator=train_iterator)
      log.info('Resumed from step %d of %s', latest, ckpt.directory)
    else:
      host_state = initial_state(config, init_models, optimizers)
      log.info('Starting a new run in %s', workdir)
    _log_setup(config, host_state, runner)
    frozen = runner.put_replicated(load_frozen(config, init_models))
    step = int(host_state.step)
    state = runner.put_replicated(host_state)
    del host_state
    sample_every = int(config.train.sample_every)  # 0 disables sample grids
    sampler = Sampler(config, init_models) if is_main and sample_every > 0 else None
    lr_g = state_lib.learning_rate_schedule(config.optim.lr_g, config.train.num_steps,
                                            config.optim.decay_second_half)
    lr_d = state_lib.learning_rate_schedule(config.optim.lr_d, config.train.num_steps,
                                            config.optim.decay_second_half)

    def write_samples(state, step):
      if sampler is None:
        return
      host = runner.get_replicated({'ema': state.ema_params, 'raw': state.g_params,
                                    'g_state': state.g_state})
      grid, l1 = sampler(host['ema'], host['g_state'])
      _, l1_raw = sampler(host['raw'], host['g_state'])
      l1.update({k + '_raw': v for k, v in l1_raw.items()})
      samples.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), grid)
      writer.image(step, 'samples/label|edge|fake_edge|coarse|final|real', grid)
      writer.scalars(step, l1)
      log.info('step %d: samples written; L1(I\'\', real) EMA %.4f, raw %.4f', step,
               l1['eval/l1_final'], l1['eval/l1_final_raw'])

    if step == 0:
      write_samples(state, 0)
    num_steps = int(config.train.num_steps)
    progress = logging_utils.Progress(step, num_steps, enabled=is_main)
    last_metrics: dict[str, float] = {}
    pending = None  # (step, device metrics) of the previous step, checked one step late
    t_log, steps_since_log = time.time(), 0

    def check(pending):
      nonlocal last_metrics
      s, dev_metrics = pending
      host = {k: float(v) for k, v in runner.get_replicated(dev_metrics).items()}
      bad = logging_utils.first_nonfinite(host)
      if bad is not None and config.train.halt_on_nonfinite:
        ckpt.wait_until_finished()
        raise FloatingPointError(
            f'Non-finite loss at step {s}: {bad} = {host[bad]}. Stopping; the last good checkpoint '
            f'is step {ckpt.latest_step()} in {ckpt.directory}.')
      last_metrics = host
      return s, host

    with checkpointing.ShutdownSignal() as shutdown:
      while step < num_steps:
        batch = runner.put_batch(next(train_iterator))
        state, metrics = runner(state, batch, frozen)
        step += 1
        done = None
        if pending is not None:
          done = check(pending)
        pending = (step, metrics)
        steps_since_log += 1
        stop = _any_process(shutdown.requested)
        save = step % int(config.train.checkpoint_every) == 0 or step == num_steps or stop
        log_now = step % int(config.train.log_every) == 0 or save
        if save or log_now:
          done, pending = check(pending), None
        if done is not None:
          progress.update(1, done[1])
        else:
          progress.update(1)
        if log_now and done is not None:
          elapsed = time.time() - t_log
          scalars = dict(done[1])
          scalars.update({'train/steps_per_sec': steps_since_log / max(elapsed, 1e-9),
                          'train/lr_g': float(lr_g(step - 1)), 'train/lr_d': float(lr_d(step - 1))})
          writer.scalars(step, scalars)
          t_log, steps_since_log = time.time(), 0
        if sample_every > 0 and (step % sample_every == 0 or step == num_steps):
          write_samples(state, step)
        if save:
          ckpt.save(step, runner.get_replicated(state), data_iterator=train_iterator,
                    config=config)
        if on_step is not None:
          on_step(step)
        if stop:
          log.warning('Stopped by signal after step %d; checkpoint saved.', step)
          break
      if pending is not None:
        check(pending)
    writer.flush()
    return last_metrics
  finally:
    if progress is not None:
      progress.close()
    ckpt.close()  # waits for pending saves on every exit
    writer.close()
    if hasattr(train_iterator, 'close'):
      train_iterator.close()
    if file_handler is not None:
      logging.getLogger().removeHandler(file_handler)
      file_handler.close()
