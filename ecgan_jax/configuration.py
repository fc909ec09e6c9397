"""Derived quantities of an ml-collections config and its validation.

Everything that turns config fields into shapes lives here, so models, data and training agree on
one definition of "number of classes" or "latent size".
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

# name -> (label_nc, contain_dontcare_label) as shipped by each dataset.
KNOWN_DATASETS: dict[str, tuple[int, bool]] = {
    'ade20k': (150, True),
    'cityscapes': (35, True),
    'coco_stuff': (182, True),
    'celebamask_hq': (19, False),
}
DATASETS = ('synthetic', 'folder') + tuple(KNOWN_DATASETS)
UPSAMPLING = {'normal': 5, 'more': 6, 'most': 7}
PREPROCESS_MODES = ('resize_and_crop', 'fixed', 'none')
GAN_MODES = ('hinge', 'original', 'ls')
DTYPES = ('float32', 'bfloat16')  # config.model.dtype: compute dtype (params stay float32)
OPTIMIZERS = ('adam', 'sgd')
CONTRASTIVE_GATHER = ('anchors', 'maps')
CLASS_FUSION = ('learned', 'discriminator')  # how I_g reaches the output (model.class_fusion)
MULTIMODAL = ('none', 'vae', 'noise3d')
NORMS = ('batch', 'instance')
SPECTRAL = ('reference', 'all', 'none')
PARALLELISM = ('pmap', 'shard_map')
ON_BAD_EXAMPLE = ('error', 'skip')
LABEL_CHECKS = ('sample', 'all', 'none')  # label maps decoded by the data start-up check
SEGFORMER_VARIANTS = ('b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'tiny')  # models/segformer.py:VARIANTS

log = logging.getLogger(__name__)


class ConfigError(ValueError):
  """A config field has a value the library cannot use; the message names the field."""


def num_classes(config: Any) -> int:
  """Label classes seen by the model: label_nc, plus one if a don't-care class is appended."""
  return int(config.dataset.label_nc) + int(bool(config.dataset.contain_dontcare_label))


def ignore_label(config: Any) -> int | None:
  """Label id excluded from losses and metrics (the don't-care class), or None."""
  return int(config.dataset.label_nc) if config.dataset.contain_dontcare_label else None


def semantic_nc(config: Any) -> int:
  """Channels of the generator's semantic input: one-hot classes (+1 instance-boundary channel)."""
  return num_classes(config) + (0 if config.dataset.no_instance else 1)


def num_upsampling(config: Any) -> int:
  return UPSAMPLING[config.model.num_upsampling_layers]


def image_size(config: Any) -> tuple[int, int]:
  """(height, width) of training images: width = crop_size, height = crop_size / aspect_ratio."""
  w = int(config.dataset.crop_size)
  return int(round(w / float(config.dataset.aspect_ratio))), w


def latent_size(config: Any) -> tuple[int, int]:
  """(height, width) of the generator's first feature map (SPADE: crop / 2**num_upsampling)."""
  h, w = image_size(config)
  f = 2 ** num_upsampling(config)
  return h // f, w // f


def contrastive_strides(config: Any) -> tuple[int, ...]:
  """Strides with a contrastive loss and a memory bank: model.contrastive_strides with the
  multi-scale loss (Eq. 5), else stride 1 only (Eq. 4)."""
  if config.loss.use_multiscale:
    return tuple(int(s) for s in config.model.contrastive_strides)
  return (1,)


def _choice(config: Mapping, field: str, value: Any, allowed: tuple) -> None:
  if value not in allowed:
    raise ConfigError(f'config.{field}={value!r} is not one of {list(allowed)}')


def validate_config(config: Any) -> Any:
  """Raises ConfigError naming the offending field; returns the config unchanged when valid."""
  d, m, l, t = config.dataset, config.model, config.loss, config.train
  _choice(config, 'dataset.name', d.name, DATASETS)
  if d.name in KNOWN_DATASETS:
    nc, dontcare = KNOWN_DATASETS[d.name]
    if d.label_nc != nc:
      raise ConfigError(
          f'config.dataset.label_nc={d.label_nc} does not match dataset {d.name!r}, which has {nc} '
          'label ids')
    if bool(d.contain_dontcare_label) != dontcare:
      raise ConfigError(
          f'config.dataset.contain_dontcare_label={d.contain_dontcare_label} does not match dataset '
          f'{d.name!r} (expected {dontcare})')
  if d.label_nc < 1:
    raise ConfigError(f'config.dataset.label_nc={d.label_nc} must be >= 1')
  _choice(config, 'dataset.preprocess_mode', d.preprocess_mode, PREPROCESS_MODES)
  if d.aspect_ratio <= 0:
    raise ConfigError(f'config.dataset.aspect_ratio={d.aspect_ratio} must be > 0')
  if d.preprocess_mode == 'resize_and_crop' and d.load_size < d.crop_size:
    raise ConfigError(
        f'config.dataset.load_size={d.load_size} is smaller than config.dataset.crop_size='
        f'{d.crop_size}')
  _choice(config, 'model.num_upsampling_layers', m.num_upsampling_layers, tuple(UPSAMPLING))
  f = 2 ** num_upsampling(config)
  h, w = image_size(config)
  if w % f or h % f or h * d.aspect_ratio != w:
    raise ConfigError(
        f'config.dataset.crop_size={d.crop_size} with aspect_ratio={d.aspect_ratio} gives '
        f'{h}x{w} (HxW), which is not divisible by 2**{num_upsampling(config)}={f} as '
        f'config.model.num_upsampling_layers={m.num_upsampling_layers!r} requires')
  _choice(config, 'model.param_free_norm', m.param_free_norm, NORMS)
  _choice(config, 'model.spectral_norm', m.spectral_norm, SPECTRAL)
  _choice(config, 'model.multimodal', m.multimodal, MULTIMODAL)
  _choice(config, 'model.dtype', m.dtype, DTYPES)
  _choice(config, 'model.label_generator', m.label_generator, SEGFORMER_VARIANTS)
  for s in m.contrastive_strides:
    if s < 1 or h % s or w % s:
      raise ConfigError(f'config.model.contrastive_strides contains {s}, which does not divide '
                        f'the {h}x{w} image')
  if len(l.scale_weights) != len(m.contrastive_strides):
    raise ConfigError(
        f'config.loss.scale_weights has {len(l.scale_weights)} entries but '
        f'config.model.contrastive_strides has {len(m.contrastive_strides)}')
  for pair in l.cross_scale_pairs:
    for s in pair:
      if s not in tuple(m.contrastive_strides):
        raise ConfigError(f'config.loss.cross_scale_pairs uses stride {s}, which is not in '
                          f'config.model.contrastive_strides={tuple(m.contrastive_strides)}')
  _choice(config, 'model.class_fusion', m.class_fusion, CLASS_FUSION)
  _choice(config, 'loss.gan_mode', l.gan_mode, GAN_MODES)
  if l.temperature <= 0:
    raise ConfigError(f'config.loss.temperature={l.temperature} must be > 0')
  for name in ('bank_size', 'bank_pixels_per_class', 'anchors_per_class', 'sim_chunk'):
    if l[name] < 1:
      raise ConfigError(f'config.loss.{name}={l[name]} must be >= 1')
  _choice(config, 'loss.contrastive_gather', l.contrastive_gather, CONTRASTIVE_GATHER)
  if l.contrastive_chunk < 0:
    raise ConfigError(f'config.loss.contrastive_chunk={l.contrastive_chunk} must be >= 0 '
                      '(0 = no chunking)')
  _choice(config, 'optim.optimizer', config.optim.optimizer, OPTIMIZERS)
  _choice(config, 'train.parallelism', t.parallelism, PARALLELISM)
  for name in ('batch_size', 'num_steps', 'log_every', 'checkpoint_every', 'keep_checkpoints'):
    if int(t[name]) < 1:
      raise ConfigError(f'config.train.{name}={t[name]} must be >= 1')
  if int(t.get('keep_every', 0)) < 0:
    raise ConfigError(f'config.train.keep_every={t.keep_every} must be >= 0 (0: no milestones)')
  _choice(config, 'dataset.on_bad_example', d.on_bad_example, ON_BAD_EXAMPLE)
  _choice(config, 'dataset.check_labels', d.get('check_labels', 'sample'), LABEL_CHECKS)
  for field in ('vgg_checkpoint', 'label_generator_checkpoint', 'init_from'):
    path = m.get(field)
    if path and not os.path.exists(os.path.expanduser(path)):
      raise ConfigError(f'config.model.{field}={path} does not exist: convert the weights with '
                        'ecgan-convert-weights (docs/pretrained.md) or leave the field unset')
  _validate_model(config)
  return config


def _validate_model(config: Any) -> None:
  """Network widths and switches that the modules need (part of `validate_config`)."""
  m = config.model
  for name in ('ngf', 'ndf', 'spade_hidden', 'feature_channels', 'z_dim', 'proj_dim', 'num_D',
               'n_layers_D'):
    if int(m[name]) < 1:
      raise ConfigError(f'config.model.{name}={m[name]} must be >= 1')
  if m.edge_transfer_layers < 0:
    raise ConfigError(f'config.model.edge_transfer_layers={m.edge_transfer_layers} must be >= 0')
  if m.branch_widths is not None and (len(m.branch_widths) != m.edge_transfer_layers
                                      or any(int(w) < 1 for w in m.branch_widths)):
    raise ConfigError(
        f'config.model.branch_widths={tuple(m.branch_widths)} must hold '
        f'config.model.edge_transfer_layers={m.edge_transfer_layers} positive widths (set both, '
        "e.g. branch_widths=() with edge_transfer_layers=0 for SPADE's single output conv)")
  if m.use_edge_transfer and not m.use_edge:
    raise ConfigError('config.model.use_edge_transfer=True needs config.model.use_edge=True '
                      '(G_t transfers the edge branch G_e into the image branch)')
  available = trunk_strides(num_upsampling(config))
  for s in m.contrastive_strides:
    if s not in available:
      raise ConfigError(
          f'config.model.contrastive_strides contains {s}, but the trunk with '
          f'config.model.num_upsampling_layers={m.num_upsampling_layers!r} only has features at '
          f'strides {sorted(available)}')


def trunk_strides(num_upsampling_layers: int) -> tuple[int, ...]:
  """Output strides at which the generator trunk has features: 2**num_upsampling (latent) ...
  2, 1."""
  return tuple(2 ** k for k in range(num_upsampling_layers, -1, -1))


# --------------------------------------------------------------------- a trained run's networks
# Sections of a run's config that describe what was trained (networks, losses, optimiser state):
# a checkpoint fixes them. Its `dataset`, `train` and `eval` sections say where data is and how to
# run, and stay as the user gives them.
TRAINED_SECTIONS = ('model', 'loss', 'optim')
# `model` fields that say how the networks run, not what they are (same weights either way).
RUN_ONLY_MODEL_FIELDS = ('tiny', 'dtype', 'remat', 'onehot_gather', 'vgg_checkpoint',
                         'label_generator_checkpoint', 'init_from')
# `dataset` fields that shape the networks and also how label maps and images are read: a config
# that differs here describes other data, so they must match the checkpoint's.
NETWORK_DATASET_FIELDS = ('label_nc', 'contain_dontcare_label', 'no_instance', 'crop_size',
                          'aspect_ratio')


def json_tuples(x: Any) -> Any:
  """JSON lists -> tuples, recursively (a saved config's tuple fields come back as lists)."""
  if isinstance(x, Mapping):
    return {k: json_tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(json_tuples(v) for v in x)
  return x


def with_trained_networks(config: Any, trained: Mapping | None,
                          source: str = 'the checkpoint') -> Any:
  """`config` with the networks of the run that saved `trained` (its config, as the plain dict a
  checkpoint holds; None: `config` unchanged).

  The `model` (except RUN_ONLY_MODEL_FIELDS), `loss` and `optim` fields come from `trained`, so a
  run trained with `--config.model.*` overrides is evaluated or loaded with the same networks
  without repeating them; one warning names the fields that differed. Fields `trained` lacks (a
  config from an older version) stay as given. Raises ConfigError naming the field when a
  NETWORK_DATASET_FIELDS entry differs.
  """
  if trained is None:
    return config
  for field in NETWORK_DATASET_FIELDS:
    saved = json_tuples(trained.get('dataset', {}).get(field))
    if saved is not None and saved != config.dataset[field]:
      raise ConfigError(
          f'config.dataset.{field}={config.dataset[field]!r}, but {source} was trained with '
          f'{saved!r}: pass --config.dataset.{field}={saved} (or the run\'s own config file)')
  result = config.copy_and_resolve_references()
  changed = []
  with result.unlocked():
    for section in TRAINED_SECTIONS:
      for field, saved in trained.get(section, {}).items():
        if field not in result[section] or (section == 'model' and field in RUN_ONLY_MODEL_FIELDS):
          continue
        saved, given = json_tuples(saved), result[section][field]
        if saved != given:
          changed.append(f'{section}.{field} {given!r} -> {saved!r}')
          result[section][field] = saved
  if changed:
    log.warning('Using the networks %s was trained with; the config given differed in: %s',
                source, ', '.join(changed))
  return result
