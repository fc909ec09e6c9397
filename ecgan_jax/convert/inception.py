"""pytorch-fid's FID Inception weights (`pt_inception-2015-12-05-6726825d.pth`, a state_dict of its
`FIDInceptionV3`, torchvision `Inception3` key layout) -> Flax `models.inception.FIDInceptionV3`.

Keys `<Block>[.<branch>].conv.weight` and `.bn.{weight, bias, running_mean, running_var}` are kept;
the 1008-way classifier `fc.*`, `AuxLogits.*` (absent in pytorch-fid's file) and
`num_batches_tracked` are dropped on purpose. torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth` has the same layout and converts the same way.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from ecgan_jax.convert import common
from ecgan_jax.models import inception

_KEY = re.compile(r'^(?:module\.)?((?:Conv2d|Mixed)_\w+?)(?:\.(branch\w+))?\.(conv|bn)\.'
                  r'(weight|bias|running_mean|running_var)$')
_BN = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
       'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var')}


def _rule(key: str):
  m = _KEY.match(key)
  if not m:
    return None
  block, branch, layer, leaf = m.groups()
  path = (block,) + ((branch,) if branch else ()) + (layer,)
  if layer == 'conv':
    return ('params', path + ('kernel',), 'conv') if leaf == 'weight' else None
  collection, name = _BN[leaf]
  return collection, path + (name,), 'copy'


def _ignore(key: str) -> bool:
  return (key.endswith('num_batches_tracked') or key.startswith(('fc.', 'AuxLogits.'))
          or key.startswith(('module.fc.', 'module.AuxLogits.')))


def _expected_variables() -> dict:
  x = jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), jnp.float32)
  return common.abstract_variables(inception.FIDInceptionV3(), x)


def convert_inception_state_dict(state: common.StateDict) -> dict:
  """pytorch-fid FIDInceptionV3 state_dict -> {'params', 'batch_stats'}, every leaf checked."""
  variables = common.map_known_state_dict(state, _rule, _ignore,
                                          "pytorch-fid's FID Inception state_dict")
  common.check_variables(variables, _expected_variables(), 'FID Inception state_dict')
  return variables


def load_inception_params(path: str) -> dict:
  """Flax variables of `inception.FIDInceptionV3` from a local file: a converted .msgpack or
  pytorch-fid's `pt_inception-2015-12-05-*.pth` (needs torch) / a .safetensors of it."""
  if common.is_msgpack(path):
    variables = common.load_variables(path)
    common.check_variables(variables, _expected_variables(), f'FID Inception msgpack {path!r}')
    return variables
  return convert_inception_state_dict(common.load_state_dict(path))
