"""torchvision-layout VGG19 state_dict (`features.{i}.weight` ...) -> Flax `models.vgg.VGG19`.

torchvision's `vgg19().features` is an nn.Sequential in which convolution j of the network sits at
index FEATURE_INDICES[j] (ReLUs and max pools take the indices in between). Only conv1_1 .. conv5_1
are kept; deeper convolutions and the classifier are dropped on purpose.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from ecgan_jax.convert import common
from ecgan_jax.models import vgg

# torchvision `features` indices of conv1_1 .. conv5_4 (cfg 'E').
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
_KEY = re.compile(r'(?:^|\.)features\.(\d+)\.(weight|bias)$')
# Prefixes seen on wrapped VGG state_dicts (DataParallel, perceptual-loss modules) are tolerated
# because _KEY only looks at the `features.{i}.{weight,bias}` tail.


def _index_to_name() -> dict[int, str]:
  names = vgg.conv_names()
  return dict(zip(TORCHVISION_CONV_INDICES[:len(names)], names))


def _expected_variables() -> dict:
  """Abstract variables of vgg.VGG19 (shapes do not depend on the image size)."""
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  return common.abstract_variables(vgg.VGG19(), x)


def convert_vgg19_state_dict(state: common.StateDict) -> dict:
  """Maps a torchvision VGG19 state_dict to Flax variables {'params': {conv1_1: {kernel, bias},
  ...}} for `vgg.VGG19` and checks every leaf's shape against the model."""
  index_to_name = _index_to_name()
  deeper = set(TORCHVISION_CONV_INDICES) - set(index_to_name)

  def rule(key: str):
    m = _KEY.search(key)
    if not m or int(m.group(1)) not in index_to_name:
      return None
    name, leaf = index_to_name[int(m.group(1))], m.group(2)
    return 'params', (name, 'kernel' if leaf == 'weight' else 'bias'), (
        'conv' if leaf == 'weight' else 'copy')

  def ignore(key: str) -> bool:
    m = _KEY.search(key)
    return ('classifier.' in key) or bool(m and int(m.group(1)) in deeper)

  variables = common.map_known_state_dict(state, rule, ignore, 'a torchvision VGG19 state_dict')
  common.check_variables(variables, _expected_variables(), 'VGG19 state_dict')
  return variables


def load_vgg19_params(path: str) -> dict:
  """Flax variables {'params': ...} of `vgg.VGG19` from a local file: a converted .msgpack, a
  torchvision-layout .safetensors (no torch needed) or .pth/.pt/.bin (needs torch)."""
  if common.is_msgpack(path):
    variables = common.load_variables(path)
    common.check_variables(variables, _expected_variables(), f'VGG19 msgpack {path!r}')
    return variables
  return convert_vgg19_state_dict(common.load_state_dict(path))
