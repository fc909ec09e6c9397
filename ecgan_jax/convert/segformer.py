"""Hugging Face `SegformerForSemanticSegmentation` checkpoint -> Flax `models.segformer.SegFormer`.

Reads local files only: a `save_pretrained` folder (config.json + model.safetensors or
pytorch_model.bin), a single weights file, or a converted .msgpack. Both key layouts are accepted:
the hub/`save_pretrained` one (`segformer.encoder.block.{i}.{j}.attention.self.query`, ...) and the
module names of transformers >= 5 (`segformer.stages.{i}.blocks.{j}.attention.q_proj`, ... as in
`model.state_dict()`); the second is first rewritten to the first.

The hyper-parameters come from config.json when present, else from the weights (sizes, depths,
kernel sizes, sr ratios, MLP ratios, decoder width) plus the named variant (or MiT's standard
(1, 2, 5, 8)) for the attention heads, which weights cannot reveal.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp

from ecgan_jax.convert import common
from ecgan_jax.models import segformer

# transformers >= 5 module names -> hub checkpoint names (applied in order, first match per rule).
_V5_TO_HUB = (
    (r'^stages\.(\d+)\.patch_embeddings\.', r'encoder.patch_embeddings.\1.'),
    (r'^stages\.(\d+)\.blocks\.', r'encoder.block.\1.'),
    (r'^stages\.(\d+)\.layer_norm\.', r'encoder.layer_norm.\1.'),
    (r'\.attention\.q_proj\.', '.attention.self.query.'),
    (r'\.attention\.k_proj\.', '.attention.self.key.'),
    (r'\.attention\.v_proj\.', '.attention.self.value.'),
    (r'\.attention\.sequence_reduction\.sequence_reduction\.', '.attention.self.sr.'),
    (r'\.attention\.sequence_reduction\.layer_norm\.', '.attention.self.layer_norm.'),
    (r'\.attention\.o_proj\.', '.attention.output.dense.'),
    (r'\.mlp\.fc1\.', '.mlp.dense1.'),
    (r'\.mlp\.fc2\.', '.mlp.dense2.'),
    (r'\.layernorm_before\.', '.layer_norm_1.'),
    (r'\.layernorm_after\.', '.layer_norm_2.'),
    (r'^decode_head\.linear_projections\.', 'decode_head.linear_c.'),
)

_BLOCK = r'^encoder\.block\.(\d+)\.(\d+)\.'
# hub module name -> (Flax path template, module type). Templates are formatted with the groups.
_MODULES = (
    (r'^encoder\.patch_embeddings\.(\d+)\.proj$', 'encoder/stage_{0}/patch_embed/proj', 'conv'),
    (r'^encoder\.patch_embeddings\.(\d+)\.layer_norm$', 'encoder/stage_{0}/patch_embed/norm', 'ln'),
    (_BLOCK + r'layer_norm_1$', 'encoder/stage_{0}/block_{1}/norm1', 'ln'),
    (_BLOCK + r'attention\.self\.(query|key|value)$', 'encoder/stage_{0}/block_{1}/attn/{2}',
     'linear'),
    (_BLOCK + r'attention\.self\.sr$', 'encoder/stage_{0}/block_{1}/attn/sr', 'conv'),
    (_BLOCK + r'attention\.self\.layer_norm$', 'encoder/stage_{0}/block_{1}/attn/sr_norm', 'ln'),
    (_BLOCK + r'attention\.output\.dense$', 'encoder/stage_{0}/block_{1}/attn/out', 'linear'),
    (_BLOCK + r'layer_norm_2$', 'encoder/stage_{0}/block_{1}/norm2', 'ln'),
    (_BLOCK + r'mlp\.dense1$', 'encoder/stage_{0}/block_{1}/mlp/fc1', 'linear'),
    (_BLOCK + r'mlp\.dwconv\.dwconv$', 'encoder/stage_{0}/block_{1}/mlp/dwconv', 'conv'),
    (_BLOCK + r'mlp\.dense2$', 'encoder/stage_{0}/block_{1}/mlp/fc2', 'linear'),
    (r'^encoder\.layer_norm\.(\d+)$', 'encoder/stage_{0}/norm', 'ln'),
    (r'^decode_head\.linear_c\.(\d+)\.proj$', 'decode_head/linear_c{0}', 'linear'),
    (r'^decode_head\.linear_fuse$', 'decode_head/linear_fuse', 'conv'),
    (r'^decode_head\.batch_norm$', 'decode_head/batch_norm', 'bn'),
    (r'^decode_head\.classifier$', 'decode_head/classifier', 'conv'),
)
# (module type, torch leaf) -> (collection, Flax leaf, layout change)
_LEAVES = {
    ('linear', 'weight'): ('params', 'kernel', 'linear'),
    ('conv', 'weight'): ('params', 'kernel', 'conv'),
    ('ln', 'weight'): ('params', 'scale', 'copy'),
    ('bn', 'weight'): ('params', 'scale', 'copy'),
    ('bn', 'running_mean'): ('batch_stats', 'mean', 'copy'),
    ('bn', 'running_var'): ('batch_stats', 'var', 'copy'),
}


def hub_key(key: str) -> str:
  """A state_dict key in the hub layout without the `segformer.` prefix."""
  key = key[len('segformer.'):] if key.startswith('segformer.') else key
  for pattern, replacement in _V5_TO_HUB:
    key = re.sub(pattern, replacement, key)
  return key


def _rule(key: str) -> tuple[str, tuple[str, ...], str] | None:
  module, leaf = hub_key(key).rsplit('.', 1)
  for pattern, template, kind in _MODULES:
    m = re.match(pattern, module)
    if m:
      if leaf != 'bias' and (kind, leaf) not in _LEAVES:
        return None
      collection, name, layout = _LEAVES.get((kind, leaf), ('params', leaf, 'copy'))
      return collection, tuple(template.format(*m.groups()).split('/')) + (name,), layout
  return None


def _ignore(key: str) -> bool:
  # BatchNorm's step counter and the image-classification head of ImageNet MiT checkpoints.
  return key.endswith('num_batches_tracked') or hub_key(key).startswith('classifier.')


def convert_segformer_state_dict(state: common.StateDict) -> dict:
  """Maps an HF SegFormer state_dict to Flax variables {'params': {'encoder', 'decode_head'},
  'batch_stats': {'decode_head'}} (no shape check: see `load_segformer_params`)."""
  variables = common.map_known_state_dict(state, _rule, _ignore, 'an HF SegFormer state_dict')
  if 'params' not in variables or 'encoder' not in variables['params']:
    raise common.ConversionError('No SegFormer encoder weights found in the state_dict')
  return variables


def spec_from_hf_config(hf: dict) -> tuple[segformer.SegFormerSpec, int]:
  """(SegFormerSpec, num_labels) from the dict of an HF SegformerConfig config.json."""
  t = lambda name: tuple(int(v) for v in hf[name])
  num_labels = int(hf['num_labels']) if 'num_labels' in hf else len(hf.get('id2label', {})) or 2
  return segformer.SegFormerSpec(
      hidden_sizes=t('hidden_sizes'), depths=t('depths'), num_heads=t('num_attention_heads'),
      sr_ratios=t('sr_ratios'), patch_sizes=t('patch_sizes'), strides=t('strides'),
      mlp_ratios=t('mlp_ratios'), decoder_hidden_size=int(hf['decoder_hidden_size'])), num_labels


def spec_from_variables(variables: dict, variant: str | None = None
                        ) -> tuple[segformer.SegFormerSpec, int]:
  """(SegFormerSpec, num_labels) read off converted weights. Heads come from `variant` (or MiT's
  (1, 2, 5, 8)); strides are MiT's (4, 2, 2, 2), as weights cannot show them."""
  enc = variables['params']['encoder']
  n = len([k for k in enc if k.startswith('stage_')])
  stages = [enc[f'stage_{i}'] for i in range(n)]
  hidden = tuple(int(s['patch_embed']['proj']['kernel'].shape[-1]) for s in stages)
  blocks = [[s[f'block_{j}'] for j in range(len([k for k in s if k.startswith('block_')]))]
            for s in stages]
  base = segformer.get_spec(variant) if variant else segformer.VARIANTS['b0']
  head = variables['params'].get('decode_head', {})
  decoder = int(head['linear_c0']['kernel'].shape[-1]) if head else base.decoder_hidden_size
  num_labels = int(head['classifier']['kernel'].shape[-1]) if head else 0
  spec = segformer.SegFormerSpec(
      hidden_sizes=hidden,
      depths=tuple(len(b) for b in blocks),
      num_heads=base.num_heads if len(base.num_heads) == n else (1,) * n,
      sr_ratios=tuple(int(b[0]['attn']['sr']['kernel'].shape[0]) if 'sr' in b[0]['attn'] else 1
                      for b in blocks),
      patch_sizes=tuple(int(s['patch_embed']['proj']['kernel'].shape[0]) for s in stages),
      strides=base.strides if len(base.strides) == n else (4,) + (2,) * (n - 1),
      mlp_ratios=tuple(int(b[0]['mlp']['fc1']['kernel'].shape[-1]) // c
                       for b, c in zip(blocks, hidden)),
      decoder_hidden_size=decoder)
  return spec, num_labels


def _config_json(path: str) -> dict | None:
  folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  candidate = os.path.join(folder, 'config.json')
  if not os.path.isfile(candidate):
    return None
  with open(candidate) as f:
    hf = json.load(f)
  return hf if hf.get('model_type') == 'segformer' else None


def _sidecar(path: str) -> str:
  """The JSON next to a converted .msgpack that records its SegFormerSpec and num_labels."""
  return path[:-len(common.MSGPACK_SUFFIX)] + '.json'


def save_segformer_params(variables: Any, spec: segformer.SegFormerSpec, num_labels: int,
                          path: str) -> str:
  """Writes variables as flax msgpack plus a sidecar .json holding the spec; returns the path."""
  if not path.endswith(common.MSGPACK_SUFFIX):
    raise ValueError(f'Output path {path!r} must end in {common.MSGPACK_SUFFIX}')
  common.save_variables(variables, path)
  with open(_sidecar(path), 'w') as f:
    json.dump({'model_type': 'ecgan_jax_segformer', 'num_labels': num_labels,
               'spec': dataclasses.asdict(spec)}, f, indent=1)
  return path


def read_segformer_checkpoint(path: str, variant: str | None = None
                              ) -> tuple[segformer.SegFormerSpec, int, dict]:
  """(spec, num_labels, variables) of a local SegFormer checkpoint (.msgpack, HF folder or file).

  The variables are checked leaf by leaf against the model the spec describes. A checkpoint with
  no decode head (an ImageNet MiT encoder) gives variables with only params/encoder and
  num_labels 0: merge them into freshly initialised variables to train a head online.
  """
  if common.is_msgpack(path):
    variables = common.load_variables(path)
    meta = None
    if os.path.isfile(_sidecar(path)):
      with open(_sidecar(path)) as f:
        meta = json.load(f)
    if meta:
      spec = segformer.SegFormerSpec(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in meta['spec'].items()})
      num_labels = int(meta['num_labels'])
    else:
      spec, num_labels = spec_from_variables(variables, variant)
  else:
    variables = convert_segformer_state_dict(common.load_state_dict(path))
    hf = _config_json(path)
    if hf is not None:
      spec, num_labels = spec_from_hf_config(hf)
    else:
      spec, num_labels = spec_from_variables(variables, variant)
  has_head = 'decode_head' in variables['params']
  num_labels = (int(variables['params']['decode_head']['classifier']['kernel'].shape[-1])
                if has_head else 0)
  model = segformer.SegFormer(spec=spec, num_labels=max(num_labels, 1))
  expected = common.abstract_variables(model, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  if not has_head:
    expected = {'params': {'encoder': expected['params']['encoder']}}
  common.check_variables(variables, expected, f'SegFormer checkpoint {path!r}')
  return spec, num_labels, variables


def load_segformer_params(path: str, variant: str | None = None) -> dict:
  """Flax variables {'params', 'batch_stats'} of `SegFormer(variant, num_labels)` from a local
  checkpoint; if `variant` is given, the checkpoint's hyper-parameters must be that variant's."""
  spec, _, variables = read_segformer_checkpoint(path, variant)
  if variant is not None:
    check_variant(spec, variant, path)
  return variables


def check_variant(spec: segformer.SegFormerSpec, variant: str, what: str) -> None:
  """Raises ConversionError listing the fields in which `spec` differs from MiT-`variant`."""
  want = segformer.get_spec(variant)
  diffs = [f'{f.name}: checkpoint {getattr(spec, f.name)} vs {variant} {getattr(want, f.name)}'
           for f in dataclasses.fields(spec) if getattr(spec, f.name) != getattr(want, f.name)]
  if diffs:
    raise common.ConversionError(f'SegFormer checkpoint {what!r} is not MiT-{variant}: '
                                 + '; '.join(diffs))


def segformer_from_checkpoint(path: str, variant: str | None = None, **module_kwargs: Any
                              ) -> tuple[segformer.SegFormer, dict]:
  """A SegFormer module shaped like the checkpoint, and its variables (for the mIoU evaluator)."""
  spec, num_labels, variables = read_segformer_checkpoint(path, variant)
  kwargs = dict(variant=variant or 'b0', spec=spec, num_labels=num_labels)
  kwargs.update(module_kwargs)
  return segformer.SegFormer(**kwargs), variables
