"""PyTorch -> Flax weight conversion for the pretrained backbones (local files only).

  load_vgg19_params(path) -> {'params'} for models.vgg.VGG19
  load_segformer_params(path, variant=None) -> {'params', 'batch_stats'} for
      models.segformer.SegFormer
  save_variables(variables, path) / load_variables(path): flax msgpack I/O
  convert_file(kind, input_path, output_path, variant=None): one checkpoint -> .msgpack
"""
from ecgan_jax.convert.common import ConversionError, load_state_dict, load_variables, save_variables
from ecgan_jax.convert.segformer import (check_variant, load_segformer_params,
                                         read_segformer_checkpoint, save_segformer_params,
                                         segformer_from_checkpoint)
from ecgan_jax.convert.vgg19 import convert_vgg19_state_dict, load_vgg19_params

KINDS = ('vgg19', 'segformer')


def convert_file(kind: str, input_path: str, output_path: str, variant: str | None = None) -> str:
  """Converts a local PyTorch/safetensors checkpoint of `kind` ('vgg19' | 'segformer') to flax
  msgpack at `output_path` (SegFormer also writes its spec to a sidecar .json); returns the path."""
  if not output_path.endswith('.msgpack'):
    raise ValueError(f'--output={output_path!r} must end in .msgpack')
  if kind == 'vgg19':
    return save_variables(load_vgg19_params(input_path), output_path)
  if kind == 'segformer':
    spec, num_labels, variables = read_segformer_checkpoint(input_path, variant)
    if variant is not None:
      check_variant(spec, variant, input_path)
    return save_segformer_params(variables, spec, num_labels, output_path)
  raise ValueError(f'Unknown kind {kind!r}: expected one of {KINDS}')

__all__ = [
    'ConversionError', 'KINDS', 'convert_file', 'convert_vgg19_state_dict', 'load_segformer_params', 'load_state_dict',
    'load_variables', 'load_vgg19_params', 'read_segformer_checkpoint', 'save_segformer_params',
    'save_variables', 'segformer_from_checkpoint',
]
