"""ecgan-convert-weights: converts a local pretrained backbone checkpoint to flax msgpack.

  ecgan-convert-weights --kind=vgg19 --input=vgg19.pth --output=vgg19.msgpack
  ecgan-convert-weights --kind=segformer --input=segformer-b0-folder/ \
      --output=segformer_b0.msgpack [--variant=b0]

Inputs are local files only (torchvision-layout VGG19 state_dict .pth/.safetensors; Hugging Face
SegformerForSemanticSegmentation folder or .bin/.safetensors file). See docs/pretrained.md.
"""
from absl import flags

from ecgan_jax import convert
from ecgan_jax.cli import common

_KIND = flags.DEFINE_enum('kind', None, list(convert.KINDS), 'Which backbone the input holds.')
_INPUT = flags.DEFINE_string('input', None, 'Local checkpoint file or folder.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output .msgpack path.')
_VARIANT = flags.DEFINE_string('variant', None, 'SegFormer only: require this variant (b0..b5).')
flags.mark_flags_as_required(['kind', 'input', 'output'])


def main(argv):
  del argv
  path = convert.convert_file(_KIND.value, _INPUT.value, _OUTPUT.value, _VARIANT.value)
  print(f'Wrote {path}')


def run():
  """Console entry point `ecgan-convert-weights`."""
  common.run(main)


if __name__ == '__main__':
  run()
