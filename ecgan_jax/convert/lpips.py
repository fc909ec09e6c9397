"""LPIPS weights from local files -> Flax `models.lpips.LPIPS` variables.

Two sources, as the `lpips` package splits them:
  * the backbone: a torchvision-layout AlexNet / VGG16 state_dict (`features.{i}.{weight,bias}`;
    the classifier is dropped), or the package's own `net.slice{k}.{i}.*` keys, which keep
    torchvision's index i;
  * the linear heads: the package's `weights/v0.1/{alex,vgg}.pth` (`lin{l}.model.1.weight`,
    [1, C_l, 1, 1], no bias).
A full `lpips.LPIPS().state_dict()` holds both and can be given as the single file.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from ecgan_jax.convert import common
from ecgan_jax.models import lpips

_BACKBONE = re.compile(r'(?:^|\.)(?:features|net\.slice\d)\.(\d+)\.(weight|bias)$')
_HEAD = re.compile(r'(?:^|\.)lin(\d)\.model\.1\.weight$')


def _expected_variables(net: str) -> dict:
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  return common.abstract_variables(lpips.LPIPS(net), x, x)


def convert_lpips_state_dicts(backbone: common.StateDict, heads: common.StateDict,
                              net: str = 'alex') -> dict:
  """Backbone + head state_dicts (either may hold both) -> {'params': {backbone, lin0..4}}."""
  if net not in lpips.CHANNELS:
    raise ValueError(f'Unknown LPIPS backbone {net!r}: expected one of {list(lpips.NETS)}')
  index_to_name = {i: n for n, i in (lpips.ALEXNET_CONVS if net == 'alex'
                                     else lpips.VGG16_CONVS).items()}

  def rule(key: str):
    m = _HEAD.search(key)
    if m:
      return 'params', (f'lin{m.group(1)}', 'kernel'), 'conv'
    m = _BACKBONE.search(key)
    if m and int(m.group(1)) in index_to_name:
      leaf = m.group(2)
      return 'params', ('backbone', index_to_name[int(m.group(1))],
                        'kernel' if leaf == 'weight' else 'bias'), (
                            'conv' if leaf == 'weight' else 'copy')
    return None

  def ignore(key: str) -> bool:
    m = _BACKBONE.search(key)
    return ('classifier.' in key or 'scaling_layer.' in key
            or bool(m and int(m.group(1)) > max(index_to_name)))

  merged = dict(backbone)
  merged.update(heads)
  variables = common.map_known_state_dict(merged, rule, ignore,
                                          f'an LPIPS-{net} backbone or its linear heads')
  common.check_variables(variables, _expected_variables(net), f'LPIPS-{net} weights')
  return variables


def load_lpips_params(path: str, net: str = 'alex', heads_path: str | None = None) -> dict:
  """Flax variables of `lpips.LPIPS(net)` from local files: a converted .msgpack, or a backbone
  state_dict plus `heads_path` (the package's v0.1 .pth; omitted when `path` holds both)."""
  if common.is_msgpack(path):
    variables = common.load_variables(path)
    common.check_variables(variables, _expected_variables(net), f'LPIPS msgpack {path!r}')
    return variables
  heads = common.load_state_dict(heads_path) if heads_path else {}
  return convert_lpips_state_dicts(common.load_state_dict(path), heads, net)
