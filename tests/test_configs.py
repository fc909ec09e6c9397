"""Configs: every dataset file loads, presets switch components, bad values name their field."""
import importlib

import pytest

from configs import default
from ecgan_jax import configuration

DATASET_FILES = ('ade20k', 'cityscapes', 'coco_stuff', 'celebamask_hq', 'synthetic')


@pytest.mark.parametrize('name', DATASET_FILES)
@pytest.mark.parametrize('arg', [None, 'tiny', 'B1', 'tiny,B5'])
def test_every_dataset_config_validates(name, arg):
  c = importlib.import_module(f'configs.{name}').get_config(arg)
  configuration.validate_config(c)


def test_dataset_geometry_matches_spade():
  from configs import ade20k, cityscapes
  assert configuration.image_size(cityscapes.get_config()) == (256, 512)
  assert configuration.latent_size(cityscapes.get_config()) == (8, 16)
  assert configuration.num_classes(ade20k.get_config()) == 151
  assert configuration.semantic_nc(cityscapes.get_config()) == 37  # 35 + don't care + instance


def test_ablation_presets_switch_components_cumulatively():
  flags = []
  for name in default.ABLATIONS:
    c = default.get_config(name)
    flags.append([c.model.use_edge, c.model.use_edge_transfer, c.model.use_semantic_preserving,
                  c.loss.use_similarity, c.loss.use_pixel_contrastive, c.loss.use_multiscale,
                  c.loss.use_cross_scale])
  assert flags[0] == [False] * 7
  assert flags[-1] == [True] * 7
  assert [sum(f) for f in flags] == list(range(8))
  assert default.get_config().ablation == 'B8'


def test_unknown_config_argument_is_rejected():
  with pytest.raises(ValueError, match='B9'):
    default.get_config('B9')


@pytest.mark.parametrize('field,value,match', [
    ('dataset.name', 'imagenet', 'dataset.name'),
    ('dataset.label_nc', 151, 'dataset.label_nc'),
    ('dataset.crop_size', 250, 'dataset.crop_size'),
    ('loss.temperature', 0.0, 'loss.temperature'),
    ('model.num_upsampling_layers', 'many', 'model.num_upsampling_layers'),
    ('train.parallelism', 'dp', 'train.parallelism'),
])
def test_bad_field_fails_with_message_naming_it(field, value, match):
  from configs import ade20k
  c = ade20k.get_config()
  section, key = field.split('.')
  c[section][key] = value
  with pytest.raises(configuration.ConfigError, match=match):
    configuration.validate_config(c)


def test_synthetic_demo_drops_the_random_vgg_and_widens_g_e_while_tiny_keeps_its_program():
  synthetic = importlib.import_module('configs.synthetic')
  demo = synthetic.get_config()
  assert demo.loss.lambda_vgg == 0.0 and demo.model.vgg_checkpoint is None  # no weights ship
  assert demo.train.num_steps == 600 and demo.model.branch_widths == (16, 16, 16)
  for arg in ('tiny', 'tiny,B4'):  # the tests' variants keep the programs they compile
    tiny = synthetic.get_config(arg)
    assert tiny.loss.lambda_vgg == default.get_config().loss.lambda_vgg > 0
    assert tiny.model.branch_widths is None
