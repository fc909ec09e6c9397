"""Class names of every dataset's label space (data/classes.py) and the demo palette."""
import importlib

import numpy as np
import pytest

from ecgan_jax import configuration, inference
from ecgan_jax.data import classes


@pytest.mark.parametrize('name',
                         ['ade20k', 'cityscapes', 'coco_stuff', 'celebamask_hq', 'synthetic'])
def test_one_name_and_colour_per_class(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  names = classes.class_names(config)
  assert len(names) == configuration.num_classes(config)
  assert len(set(names)) == len(names)  # unique: the demo's palette buttons are told apart by name
  assert not any(n.startswith('class ') for n in names)  # every id of a known dataset is named
  if config.dataset.contain_dontcare_label:
    assert names[-1] == classes.DONTCARE
  colours = inference.class_colors(config)
  assert colours.shape == (len(names), 3) and colours.dtype == np.uint8


def test_known_ids():
  assert classes.ADE20K[0] == 'wall' and classes.ADE20K[149] == 'flag'
  assert classes.CITYSCAPES[7] == 'road' and classes.CITYSCAPES[26] == 'car'
  assert classes.COCO_STUFF[0] == 'person' and classes.COCO_STUFF[181] == 'wood'
  assert classes.CELEBAMASK_HQ[:2] == ('background', 'skin')
