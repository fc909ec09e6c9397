"""The one factory of a training run: models, optimisers, train state, frozen networks, the step.

  s = setup.build(config, num_devices)      # validates the config (the only validation pass)
  s.abstract_state()                        # TrainState of ShapeDtypeStructs (checkpoint restore)
  s.initial_state()                         # fresh TrainState on the host, pretrained parts loaded
  s.frozen()                                # {'vgg': params}: networks that are never trained
  s.runner(parallelism)                     # the parallel step (pmap | shard_map) of `s.step_body`

Used by the trainer, benchmarks/train_step.py, the inference API and the tests. Pretrained parts of
the initial state are loaded by the functions in `PRETRAINED` (each (config, state) -> state), in
order, after random initialisation; the EMA then starts from the resulting generator.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import _runtime, configuration, models as models_lib
from ecgan_jax.convert import load_segformer_params, load_vgg19_params, spade_ecgan
from ecgan_jax.models import segformer, vgg
from ecgan_jax.models.layers import to_dtype
from ecgan_jax.training import checkpointing, parallel, state as state_lib, step as step_lib
from ecgan_jax.training.options import StepOptions

log = logging.getLogger(__name__)
VGG_SEED_SALT = 0x76676731  # fold_in salt of the random VGG's seed (no weights given)


def build_models(config: Any, axis_name: str | None = None) -> state_lib.Models:
  """The run's Flax modules for `axis_name` (None: init and single-device use; 'batch': the step).
  VGG19 and the label generator take images in [-1, 1] (they normalise for ImageNet inside)."""
  return state_lib.Models(
      generator=models_lib.build_generator(config, axis_name),
      discriminator=models_lib.build_discriminator(config, axis_name),
      label_generator=segformer.build_label_generator(config, axis_name),
      vgg=vgg.VGG19(dtype=to_dtype(config.model.dtype), normalize_input=True),
      style_encoder=(models_lib.build_style_encoder(config, axis_name)
                     if config.model.multimodal == 'vae' else None))


def load_frozen(config: Any, models: state_lib.Models) -> dict:
  """Frozen networks: {'vgg': VGG19 params} from config.model.vgg_checkpoint, else random init
  (seeded, so a resumed run gets the same weights), logged as such; {} at loss.lambda_vgg = 0."""
  if not state_lib.uses_vgg(config):
    return {}  # the step has no VGG19
  path = config.model.vgg_checkpoint
  if path:
    log.info('VGG19 perceptual loss: pretrained weights from %s', path)
    return {'vgg': load_vgg19_params(path)['params']}
  log.warning('VGG19 perceptual loss: NO weights given (config.model.vgg_checkpoint); using a '
              'RANDOMLY INITIALISED VGG19 (fixed seed). Fine for tests and the demo, not for '
              'reproducing the paper.')
  rng = jax.random.fold_in(jax.random.PRNGKey(int(config.train.seed)), VGG_SEED_SALT)
  params = _runtime.jit_run_once(
      lambda k: models.vgg.init(k, jnp.zeros((1, 32, 32, 3)))['params'])(rng)
  return {'vgg': params}


def load_label_generator(config: Any, state: state_lib.TrainState) -> state_lib.TrainState:
  """G_l from config.model.label_generator_checkpoint (with the similarity loss on)."""
  path = config.model.label_generator_checkpoint
  if not path or not config.loss.use_similarity:
    return state
  variables = load_segformer_params(path, config.model.label_generator)
  params = variables['params']
  l_state = {k: v for k, v in variables.items() if k != 'params'}
  want = jax.tree.map(np.shape, (state.l_params, state.l_state))
  got = jax.tree.map(np.shape, (params, l_state))
  if want != got:
    raise ValueError(f'Label generator checkpoint {path!r} does not fit SegFormer-'
                     f'{config.model.label_generator} with {configuration.num_classes(config)} '
                     'labels (shapes differ)')
  return state.replace(l_params=checkpointing.to_host(params),
                       l_state=checkpointing.to_host(l_state))


def load_init_from(config: Any, state: state_lib.TrainState) -> state_lib.TrainState:
  """Warm start from config.model.init_from (a converted SPADE / ECGAN G, D, E): those networks
  replace their fresh initialisation; G_c, the projection head, ... keep theirs."""
  if not config.model.init_from:
    return state
  return checkpointing.to_host(spade_ecgan.apply_init_from(state, config.model.init_from))


# Pretrained parts of a fresh state, applied in order by `Setup.initial_state`: each a
# (config, state) -> state function that replaces parts of the fresh state.
PRETRAINED: tuple[Callable[[Any, state_lib.TrainState], state_lib.TrainState], ...] = (
    load_label_generator, load_init_from)


# Config fields that only the host side of a run reads (data loading, logging, checkpoints,
# evaluation), never the traced init or step; None: the whole section. `Setup.cache_key` leaves them
# out. A field that the step starts to read must leave this table:
# tests/training/test_setup.py checks that changing all of them leaves the init and step jaxprs
# unchanged.
HOST_ONLY_FIELDS: dict[str, tuple[str, ...] | None] = {
    'train': ('log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints', 'keep_every',
              'async_checkpointing', 'halt_on_nonfinite', 'eval_every'),
    'dataset': ('root', 'prepared_dir', 'edge_cache_dir', 'num_workers', 'eval_num_examples',
                'synthetic_size', 'on_bad_example', 'check_labels', 'check_labels_sample',
                'shuffle_seed', 'flip'),
    'eval': None,
}


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run builds from its config once. `init_models` are built without an axis name
  (initialisation, sampling, inference); `models` with parallel.AXIS (the step)."""
  config: Any
  options: StepOptions
  init_models: state_lib.Models
  models: state_lib.Models
  optimizers: state_lib.Optimizers
  # _runtime.ExecutableCache: init and step executables saved/loaded across launches (or None).
  executables: Any = None

  def cache_key(self) -> str:
    """What identifies this run's programs in the executable cache: the config without its
    `HOST_ONLY_FIELDS` (so changing how often the run logs or saves loads the same executables)."""
    config = json.loads(self.config.to_json_best_effort())
    for section, names in HOST_ONLY_FIELDS.items():
      if names is None:
        config.pop(section, None)
      for name in names or ():
        config.get(section, {}).pop(name, None)
    return json.dumps(config, sort_keys=True)

  def _create(self, rng: jax.Array) -> state_lib.TrainState:
    return state_lib.create_train_state(self.config, rng, self.init_models, self.optimizers)

  def abstract_state(self) -> state_lib.TrainState:
    """The TrainState's shapes and dtypes (jax.eval_shape: nothing allocated or compiled). With
    `executables`, read from that cache when an earlier launch saved them (weak types dropped)."""
    rng = jax.random.PRNGKey(0)
    if self.executables is not None:
      return self.executables.eval_shape('init', self._create, (rng,), self.cache_key())
    return jax.eval_shape(self._create, rng)

  def initial_state(self) -> state_lib.TrainState:
    """A fresh TrainState on the host (seed config.train.seed), `PRETRAINED` parts loaded."""
    rng = jax.random.PRNGKey(int(self.config.train.seed))
    create = _runtime.jit_run_once(self._create)
    if self.executables is not None:
      create = self.executables.compile('init', self._create, (rng,), self.cache_key(),
                                        wrap=_runtime.jit_run_once)
    state = checkpointing.to_host(create(rng))
    for load in PRETRAINED:
      state = load(self.config, state)
    return state.replace(ema_params=jax.tree.map(np.copy, state.g_params))

  def frozen(self) -> dict:
    return load_frozen(self.config, self.init_models)

  def step_body(self, axis_name: str | None = parallel.AXIS) -> Callable:
    """`body(state, batch, frozen) -> (state, metrics)` for one device (see step.py)."""
    models = self.models if axis_name == parallel.AXIS else build_models(self.config, axis_name)
    return step_lib.make_train_step(self.options, models, self.optimizers, axis_name)

  def runner(self, parallelism: str | None = None, devices: Sequence[jax.Device] | None = None,
             donate: bool = True) -> parallel.ParallelStep:
    """The step over `devices` (default: all), config.train.parallelism unless given; with
    `executables`, its executable comes from (and goes to) that cache."""
    runner = parallel.ParallelStep(self.step_body(), parallelism or self.config.train.parallelism,
                                   devices=devices, donate=donate)
    if self.executables is not None:
      runner.use_executable_cache(self.executables, self.cache_key())
    return runner


def build(config: Any, num_devices: int | None = None, executables: Any = None) -> Setup:
  """Validates `config` (ConfigError names the field; with `num_devices`, the global batch must
  split evenly over them) and builds the run's models, optimisers and step options. `executables`:
  a `_runtime.ExecutableCache` for the init and step programs (the trainer's fast start)."""
  configuration.validate_config(config)
  if num_devices is not None and config.train.batch_size % num_devices:
    raise configuration.ConfigError(
        f'config.train.batch_size={config.train.batch_size} is not divisible by the '
        f'{num_devices} devices')
  return Setup(config=config, options=StepOptions.from_config(config),
               init_models=build_models(config, None), models=build_models(config, parallel.AXIS),
               optimizers=state_lib.make_optimizers(config), executables=executables)
