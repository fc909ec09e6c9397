"""PyTorch -> Flax weight conversion for the pretrained backbones (local files only).

  load_vgg19_params(path) -> {'params'} for models.vgg.VGG19
  load_segformer_params(path, variant=None) -> {'params', 'batch_stats'} for
      models.segformer.SegFormer
  load_inception_params(path) -> {'params', 'batch_stats'} for models.inception.FIDInceptionV3
  load_lpips_params(path, net='alex', heads_path=None) -> {'params'} for models.lpips.LPIPS
  save_variables(variables, path) / load_variables(path): flax msgpack I/O
  convert_checkpoint(path, config, source) -> ({generator, discriminator, style_encoder}, report):
      a SPADE / released-ECGAN run's *_net_{G,D,E}.pth for `config` (spade_ecgan.py)
  apply_init_from(state, path): warm-start a fresh TrainState from a converted SPADE/ECGAN file
  convert_file(kind, input_path, output_path, variant=None, config=None): one checkpoint -> .msgpack
"""
from typing import Any

from ecgan_jax.convert.common import ConversionError, load_state_dict, load_variables, save_variables
from ecgan_jax.convert.inception import convert_inception_state_dict, load_inception_params
from ecgan_jax.convert.lpips import convert_lpips_state_dicts, load_lpips_params
from ecgan_jax.convert.spade_ecgan import (ConversionReport, LabelSpace, apply_init_from,
                                           convert_checkpoint, convert_state_dict,
                                           converted_summary, save_converted)
from ecgan_jax.convert.segformer import (check_variant, load_segformer_params,
                                         read_segformer_checkpoint, save_segformer_params,
                                         segformer_from_checkpoint)
from ecgan_jax.convert.vgg19 import convert_vgg19_state_dict, load_vgg19_params

KINDS = ('vgg19', 'segformer', 'inception', 'lpips', 'spade', 'ecgan')


def convert_file(kind: str, input_path: str, output_path: str, variant: str | None = None,
                 config: Any = None) -> str:
  """Converts a local PyTorch/safetensors checkpoint of `kind` (one of KINDS) to flax msgpack at
  `output_path` (SegFormer writes its spec, SPADE/ECGAN their conversion report to a sidecar
  .json); returns the path. 'spade' / 'ecgan' need the `config` of the run to warm-start. For
  'lpips' `variant` is the backbone (alex | vgg) and `input_path` either one file holding backbone
  and heads or 'BACKBONE,HEADS' (a torchvision state_dict and the lpips package's v0.1 .pth)."""
  if not output_path.endswith('.msgpack'):
    raise ValueError(f'--output={output_path!r} must end in .msgpack')
  if kind in ('spade', 'ecgan'):
    if config is None:
      raise ValueError(f'--kind={kind} needs --config (the run the weights are converted for)')
    variables, report = convert_checkpoint(input_path, config, kind)
    return save_converted(variables, report, output_path)
  if kind == 'vgg19':
    return save_variables(load_vgg19_params(input_path), output_path)
  if kind == 'segformer':
    spec, num_labels, variables = read_segformer_checkpoint(input_path, variant)
    if variant is not None:
      check_variant(spec, variant, input_path)
    return save_segformer_params(variables, spec, num_labels, output_path)
  if kind == 'inception':
    return save_variables(load_inception_params(input_path), output_path)
  if kind == 'lpips':
    backbone, _, heads = input_path.partition(',')
    return save_variables(load_lpips_params(backbone, variant or 'alex', heads or None),
                          output_path)
  raise ValueError(f'Unknown kind {kind!r}: expected one of {KINDS}')

__all__ = [
    'ConversionError', 'ConversionReport', 'KINDS', 'LabelSpace', 'apply_init_from',
    'convert_checkpoint', 'convert_inception_state_dict', 'convert_lpips_state_dicts',
    'convert_state_dict', 'converted_summary', 'load_inception_params', 'load_lpips_params',
    'save_converted', 'convert_file', 'convert_vgg19_state_dict', 'load_segformer_params', 'load_state_dict',
    'load_variables', 'load_vgg19_params', 'read_segformer_checkpoint', 'save_segformer_params',
    'save_variables', 'segformer_from_checkpoint',
]
