"""The training loop: state, data, the parallel step, checkpoints, logging, samples.

`train(config, workdir)` trains on every local device (and every process of a multi-host run),
resumes automatically from `workdir/checkpoints`, saves every config.train.checkpoint_every steps
(async, keeping the last config.train.keep_checkpoints and every multiple of config.train.keep_every),
saves and returns on SIGTERM/SIGINT, stops with FloatingPointError naming the step and the loss term
on a NaN/inf loss (the last good checkpoint stays the newest), and writes:
  workdir/train.log            the log (process 0): one line per log interval with every loss term,
                               warnings, the error that stopped the run
  workdir/bad_examples.txt     bad examples found by the data check or while reading (if any)
  workdir/tensorboard/         scalars (losses, gradient/parameter norms, learning rates, it/s),
                               sample grids and, every train.eval_every steps, the eval/* metrics
                               of config.eval.metrics (tensorboardX)
  workdir/samples/step_N.png   colourised label | real edge | I'_e | I' | I_g | I'' | real (EMA G)
  workdir/checkpoints/N/       state, data iterator position, config
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from ecgan_jax import _runtime, configuration
from ecgan_jax.data import pipeline
from ecgan_jax.evaluation import runner as eval_runner
from ecgan_jax.evaluation import samples
from ecgan_jax.models import count_tree
from ecgan_jax.models.generate import generate
from ecgan_jax.training import checkpointing, logging_utils, parallel, setup as setup_lib
from ecgan_jax.training import state as state_lib

log = logging.getLogger(__name__)
NUM_SAMPLES = 4


def _setup_file_logging(workdir: str) -> logging.Handler | None:
  if jax.process_index() != 0:
    return None
  handler = logging.FileHandler(os.path.join(workdir, 'train.log'))
  handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  # Orbax logs every save step at INFO through absl; keep only its warnings in train.log.
  handler.addFilter(lambda r: r.name.startswith('ecgan_jax') or r.levelno >= logging.WARNING)
  root = logging.getLogger()
  root.addHandler(handler)
  if root.level > logging.INFO or root.level == logging.NOTSET:
    root.setLevel(logging.INFO)
  return handler


def _log_setup(config: Any, state: state_lib.TrainState, runner: parallel.ParallelStep) -> None:
  if state_lib.label_generator_trained_online(config):
    if state_lib.uses_similarity(config):
      log.warning('Label generator G_l: NO converted checkpoint (config.model.label_generator_'
                  'checkpoint); SegFormer-%s is randomly initialised and TRAINED ONLINE on real '
                  '(image, label) pairs with cross-entropy. The similarity loss is only as good as '
                  'this online segmenter.', config.model.label_generator)
  else:
    log.info('Label generator G_l: frozen SegFormer-%s from %s', config.model.label_generator,
             config.model.label_generator_checkpoint)
  log.info('Parameters: generator %s, discriminator %s, label generator %s',
           f'{count_tree(state.g_params):,}', f'{count_tree(state.d_params):,}',
           f'{count_tree(state.l_params):,}')
  log.info('Devices: %d global (%d local, process %d of %d), parallelism %s, global batch %d',
           runner.num_devices, runner.num_local_devices, jax.process_index(), jax.process_count(),
           runner.parallelism, config.train.batch_size)


class Sampler:
  """Fixed validation examples -> grid images and reconstruction error of I'' (one device)."""

  def __init__(self, config: Any, init_models: state_lib.Models, executables: Any = None,
               cache_key: str = ''):
    n = NUM_SAMPLES
    it = pipeline.make_eval_iterator(config, 1, process_index=0, process_count=1, num_examples=n,
                                     batch_size=n)
    batch = next(iter(it))
    if hasattr(it, 'close'):
      it.close()
    self.batch = {k: np.asarray(v)[0] for k, v in batch.items()}  # drop the device axis
    self.num_classes = configuration.num_classes(config)

    def sample(params, g_state, label, instance, key):
      out, _ = generate(init_models, params, g_state, label, instance, key=key, train=False)
      return {k: out[k] for k in ('image', 'coarse_image', 'edge', 'class_image')}

    self._sample = sample
    self._generate = jax.jit(sample)
    # With an executable cache (_runtime.ExecutableCache) the first call loads or saves the program.
    self._executables, self._cache_key = executables, cache_key
    self._compiling = None  # Future of the program (compile_ahead)

  def _args(self, params: Any, g_state: Any) -> tuple:
    b = self.batch
    return params, g_state, b['label'], b.get('instance'), jax.random.PRNGKey(0)

  def compile_ahead(self, params: Any, g_state: Any) -> None:
    """With an executable cache: loads or compiles the program on a background thread for host
    parameters of these shapes and dtypes (`jax.ShapeDtypeStruct`s without sharding, or arrays);
    the first call waits for it."""
    if self._executables is not None:
      self._compiling = _runtime.in_background(
          self._executables.compile, 'sample', self._sample, self._args(params, g_state),
          self._cache_key, name='compile sample')
      self._executables = None

  def __call__(self, params: Any, g_state: Any) -> tuple[np.ndarray, dict[str, float]]:
    b = self.batch
    args = self._args(params, g_state)
    if self._compiling is not None:
      self._generate, self._compiling = self._compiling.result(), None
    if self._executables is not None:
      self._generate = self._executables.compile('sample', self._sample, args, self._cache_key)
      self._executables = None  # compiled once; params and g_state keep their shapes
    out = jax.device_get(self._generate(*args))
    grid = samples.sample_grid(b['label'], b['edge'], out['edge'], out['coarse_image'],
                               out['image'], b['image'], self.num_classes,
                               class_image=out['class_image'])
    l1 = {'eval/l1_final': float(np.mean(np.abs(out['image'] - b['image']))),
          'eval/l1_coarse': float(np.mean(np.abs(out['coarse_image'] - b['image'])))}
    return grid, l1


def _any_process(flag: bool) -> bool:
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


class _Outputs:
  """What a run writes besides the state: sample grids, periodic evaluation, TensorBoard scalars,
  the log line per interval, and the one-step-late NaN check of the device metrics."""

  def __init__(self, config: Any, workdir: str, run: setup_lib.Setup, runner: parallel.ParallelStep,
               writer: logging_utils.MetricWriter, ckpt: checkpointing.Checkpointer,
               is_main: bool):
    self.config, self.workdir, self.runner, self.writer, self.ckpt = (config, workdir, runner,
                                                                      writer, ckpt)
    self.sample_every = int(config.train.sample_every)  # 0 disables sample grids
    self.eval_every = int(config.train.get('eval_every', 0))  # 0 disables periodic evaluation
    self.sampler = (Sampler(config, run.init_models, run.executables, run.cache_key())
                    if is_main and self.sample_every > 0 else None)
    self.evaluator = eval_runner.PeriodicEvaluator(config) if self.eval_every > 0 else None
    self.last_metrics: dict[str, float] = {}
    self.t_log, self.steps_since_log = time.time(), 0

  def samples(self, state: state_lib.TrainState, step: int) -> None:
    if self.sampler is None:
      return
    host = self.runner.get_replicated({'ema': state.ema_params, 'raw': state.g_params,
                                       'g_state': state.g_state})
    grid, l1 = self.sampler(host['ema'], host['g_state'])
    _, l1_raw = self.sampler(host['raw'], host['g_state'])
    l1.update({k + '_raw': v for k, v in l1_raw.items()})
    folder = os.path.join(self.workdir, 'samples')
    samples.save_png(os.path.join(folder, f'step_{step:07d}.png'), grid)
    self.writer.image(step, 'samples/label|edge|fake_edge|coarse|class|final|real', grid)
    self.writer.scalars(step, l1)
    log.info('step %d: samples written to %s; L1(I\'\', real) EMA %.4f, raw %.4f', step, folder,
             l1['eval/l1_final'], l1['eval/l1_final_raw'])

  def evaluate(self, state: state_lib.TrainState, step: int) -> None:
    """config.eval.metrics of the EMA generator on eval.train_num_examples validation images
    (every process takes part; reads the state only, so resuming stays bit-exact)."""
    host = self.runner.get_replicated({'ema': state.ema_params, 'g_state': state.g_state})
    results = self.evaluator({'params': host['ema']['generator'], **host['g_state']['generator']})
    self.writer.scalars(step, {f'eval/{k}': v for k, v in results.items()})
    log.info('step %d: evaluation on %d validation images: %s', step, self.evaluator.num_examples,
             ', '.join(f'{k} {v:.4g}' for k, v in sorted(results.items())))

  def check(self, pending: tuple[int, Any]) -> tuple[int, dict[str, float]]:
    """(step, device metrics) -> (step, host metrics); FloatingPointError on a non-finite loss."""
    s, dev_metrics = pending
    host = {k: float(v) for k, v in self.runner.get_replicated(dev_metrics).items()}
    bad = logging_utils.first_nonfinite(host)
    if bad is not None and self.config.train.halt_on_nonfinite:
      self.ckpt.wait_until_finished()
      raise FloatingPointError(
          f'Non-finite loss at step {s}: {bad} = {host[bad]}. Stopping; the last good checkpoint '
          f'is step {self.ckpt.latest_step()} in {self.ckpt.directory}.')
    self.last_metrics = host
    return s, host

  def log_interval(self, step: int, num_steps: int, metrics: dict[str, float]) -> None:
    elapsed = time.time() - self.t_log
    self.writer.scalars(step, {**metrics,
                               'train/steps_per_sec': self.steps_since_log / max(elapsed, 1e-9)})
    log.info('%s', logging_utils.metrics_line(step, num_steps, metrics))
    self.t_log, self.steps_since_log = time.time(), 0

  def after_step(self, state: state_lib.TrainState, step: int, num_steps: int) -> None:
    if self.sample_every > 0 and (step % self.sample_every == 0 or step == num_steps):
      self.samples(state, step)
    if self.evaluator is not None and (step % self.eval_every == 0 or step == num_steps):
      self.evaluate(state, step)


def _start(run: setup_lib.Setup, ckpt: checkpointing.Checkpointer, runner: parallel.ParallelStep,
           out: _Outputs, frozen: Any, train_iterator: Iterator,
           workdir: str) -> tuple[state_lib.TrainState, Iterator]:
  """The newest checkpoint's state (and data position), else a fresh initial state (host); and the
  batches to train on.

  With the executable cache, the step's and the sample grid's programs are loaded or compiled on
  background threads for the state's shapes while the state itself is built (the init program
  compiled or loaded, or the checkpoint read): XLA compiles and loads with the GIL released, so on
  a cold launch the three compiles overlap on several cores. The step's batch shapes come from the
  first batch, taken here and trained on first.
  """
  latest = ckpt.latest_step()
  compile_ahead = run.executables is not None and (latest or 0) < int(run.config.train.num_steps)
  abstract = run.abstract_state() if compile_ahead or latest is not None else None
  state = None
  if latest is not None:
    state = ckpt.restore(abstract, data_iterator=train_iterator)
    log.info('Resumed from step %d of %s', latest, ckpt.directory)
  batches = train_iterator
  if compile_ahead:
    if out.sampler is not None:
      host = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                          (abstract.ema_params, abstract.g_state))
      out.sampler.compile_ahead(*host)
    first = next(train_iterator)
    batches = itertools.chain([first], train_iterator)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                         sharding=getattr(x, 'sharding', None)),
                          runner.put_batch(first))
    runner.compile_ahead(runner.abstract_replicated(abstract), shapes, frozen)
  if state is None:
    log.info('Starting a new run in %s', workdir)
    state = run.initial_state()
  return state, batches


def _loop(config: Any, state: Any, frozen: Any, step: int, runner: parallel.ParallelStep,
          batches: Iterator, train_iterator: Iterator, out: _Outputs,
          ckpt: checkpointing.Checkpointer, progress: logging_utils.Progress,
          on_step: Callable[[int], None] | None) -> None:
  """Steps to config.train.num_steps on `batches` (`train_iterator`, maybe after a batch taken
  from it before, whose position the checkpoints save); metrics are fetched one step late (the
  device runs ahead) except at log, checkpoint and stop steps."""
  num_steps = int(config.train.num_steps)
  pending = None  # (step, device metrics) of the previous step, checked one step late
  with checkpointing.ShutdownSignal() as shutdown:
    while step < num_steps:
      state, metrics = runner(state, runner.put_batch(next(batches)), frozen)
      step += 1
      done = out.check(pending) if pending is not None else None
      pending = (step, metrics)
      out.steps_since_log += 1
      stop = _any_process(shutdown.requested)
      save = step % int(config.train.checkpoint_every) == 0 or step == num_steps or stop
      log_now = step % int(config.train.log_every) == 0 or save
      if save or log_now:
        done, pending = out.check(pending), None
      progress.update(1, done[1] if done is not None else None)
      if log_now and done is not None:
        out.log_interval(step, num_steps, done[1])
      out.after_step(state, step, num_steps)
      if save:
        ckpt.save(step, runner.get_replicated(state), data_iterator=train_iterator, config=config)
      if on_step is not None:
        on_step(step)
      if stop:
        log.warning('Stopped by signal after step %d; checkpoint saved.', step)
        break
    if pending is not None:
      out.check(pending)


def train(config: Any, workdir: str, *, train_iterator: Iterator | None = None,
          on_step: Callable[[int], None] | None = None) -> dict[str, float]:
  """Trains to config.train.num_steps (resuming from `workdir`); returns the last step's metrics.

  `train_iterator`: optional grain iterator of host batches [D_local, B/D, ...] replacing the
  configured pipeline (it is checkpointed the same way). `on_step(step)` is called after every
  step's bookkeeping (checkpoint included).
  """
  # Validates (nothing is written before). With the compilation cache on, a later launch of this
  # config loads the init, step and sample-grid executables without tracing them.
  run = setup_lib.build(config, jax.device_count(), executables=_runtime.executable_cache())
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  file_handler = _setup_file_logging(workdir)
  ckpt = writer = progress = None
  try:
    runner = run.runner()
    # Data first: the sources' start-up check runs before anything compiles.
    if train_iterator is None:
      bad_file = os.path.join(workdir, 'bad_examples.txt') if is_main else None
      train_iterator = pipeline.make_train_iterator(config, runner.num_local_devices,
                                                    bad_examples_file=bad_file)
    ckpt = checkpointing.Checkpointer(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        max_to_keep=int(config.train.keep_checkpoints),
        keep_every=int(config.train.get('keep_every', 0)),
        async_checkpointing=bool(config.train.async_checkpointing))
    writer = logging_utils.MetricWriter(os.path.join(workdir, 'tensorboard'), enabled=is_main)
    out = _Outputs(config, workdir, run, runner, writer, ckpt, is_main)
    frozen = runner.put_replicated(run.frozen())
    host_state, batches = _start(run, ckpt, runner, out, frozen, train_iterator, workdir)
    _log_setup(config, host_state, runner)
    step, state = int(host_state.step), runner.put_replicated(host_state)
    del host_state
    if step == 0:
      out.samples(state, 0)
    progress = logging_utils.Progress(step, int(config.train.num_steps), enabled=is_main)
    _loop(config, state, frozen, step, runner, batches, train_iterator, out, ckpt, progress,
          on_step)
    writer.flush()
    return out.last_metrics
  except BaseException as e:
    # The command prints the error itself; train.log keeps it with its traceback.
    log.error('Training stopped: %s: %s', type(e).__name__, e, exc_info=True,
              extra={'file_only': True})
    raise
  finally:
    if progress is not None:
      progress.close()
    if ckpt is not None:
      ckpt.close()  # waits for pending saves on every exit
    if writer is not None:
      writer.close()
    if hasattr(train_iterator, 'close'):
      train_iterator.close()
    if file_handler is not None:
      logging.getLogger().removeHandler(file_handler)
      file_handler.close()
