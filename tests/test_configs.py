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


def _saved(config):
  """A config as a checkpoint holds it: the trainer's JSON, read back (tuples become lists)."""
  import json  # pylint: disable=import-outside-toplevel
  return json.loads(config.to_json_best_effort())


def test_trained_networks_come_from_the_checkpoint_config_and_the_change_is_named(caplog):
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  trained = synthetic.get_config()  # the demo: branch_widths (16, 16, 16), no VGG loss
  trained.model.ngf = 32
  trained.model.dtype = 'bfloat16'  # how it ran, not what it is
  given = synthetic.get_config('tiny')  # the user forgot the run's overrides
  given.dataset.root = '/data/elsewhere'
  given.eval.batch_size = 2
  given.model.remat = True
  given_before = given.to_json_best_effort()
  with caplog.at_level('WARNING'):
    result = configuration.with_trained_networks(given, _saved(trained), 'step 5 of runs/x')
  for section in configuration.TRAINED_SECTIONS:
    for field in result[section]:
      if not (section == 'model' and field in configuration.RUN_ONLY_MODEL_FIELDS):
        assert result[section][field] == trained[section][field], f'{section}.{field}'
  assert result.model.branch_widths == (16, 16, 16)  # a tuple again, not a JSON list
  assert result.loss.cross_scale_pairs == ((4, 8), (4, 16))
  # Data, running and evaluation stay as given; so do the fields that only say how to run.
  assert result.dataset.root == '/data/elsewhere' and result.eval.batch_size == 2
  assert result.train.num_steps == given.train.num_steps
  assert result.model.remat and result.model.dtype == 'float32' and result.model.tiny
  assert given.to_json_best_effort() == given_before  # the caller's config is untouched
  configuration.validate_config(result)
  [record] = [r for r in caplog.records if r.levelname == 'WARNING']
  assert 'step 5 of runs/x' in record.message
  assert 'model.ngf 8 -> 32' in record.message and 'model.branch_widths' in record.message
  assert 'model.dtype' not in record.message and 'model.remat' not in record.message


def test_trained_networks_keep_a_matching_config_silently_and_fields_an_old_run_lacks(caplog):
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  given = synthetic.get_config('tiny')
  saved = _saved(given)
  del saved['model']['onehot_gather'], saved['loss']['contrastive_chunk']  # an older version's
  with caplog.at_level('WARNING'):
    result = configuration.with_trained_networks(given, saved)
  assert result.to_json_best_effort() == given.to_json_best_effort()
  assert not caplog.records
  assert configuration.with_trained_networks(given, None) is given  # no config saved


@pytest.mark.parametrize('field, value', [('label_nc', 7), ('crop_size', 32),
                                          ('no_instance', False)])
def test_trained_networks_refuse_other_data_naming_the_field(field, value):
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  given = synthetic.get_config('tiny')
  trained = synthetic.get_config('tiny')
  trained.dataset[field] = value
  with pytest.raises(configuration.ConfigError,
                     match=rf'config\.dataset\.{field}=.*step 3 of runs/x was trained with '
                           rf'{value}.*--config\.dataset\.{field}={value}'):
    configuration.with_trained_networks(given, _saved(trained), 'step 3 of runs/x')
