"""ecgan-convert-weights: converts a local pretrained checkpoint to flax msgpack.

  ecgan-convert-weights --kind=vgg19 --input=vgg19.pth --output=vgg19.msgpack
  ecgan-convert-weights --kind=segformer --input=segformer-b0-folder/ \
      --output=segformer_b0.msgpack [--variant=b0]
  ecgan-convert-weights --kind=inception --input=pt_inception-2015-12-05-6726825d.pth \
      --output=inception.msgpack
  ecgan-convert-weights --kind=lpips --variant=alex --input=alexnet-owt-7be5be79.pth,alex.pth \
      --output=lpips_alex.msgpack
  ecgan-convert-weights --kind=ecgan --input=checkpoints/ade20k/latest_net_G.pth \
      --config=configs/ade20k.py --output=ecgan_ade20k.msgpack     # (or --kind=spade)

Inputs are local files only (torchvision-layout VGG19 state_dict .pth/.safetensors; Hugging Face
SegformerForSemanticSegmentation folder or .bin/.safetensors file; a SPADE / ECGAN `*_net_G.pth`
with its `_net_D` / `_net_E` siblings, or their checkpoint folder). SPADE / ECGAN weights are
converted for the run `--config` describes; train it with --config.model.init_from=<output>.
See docs/pretrained.md.
"""
from absl import flags
from ml_collections import config_flags

from ecgan_jax import convert
from ecgan_jax.cli import common

_KIND = flags.DEFINE_enum('kind', None, list(convert.KINDS), 'Which network the input holds.')
_INPUT = flags.DEFINE_string('input', None, 'Local checkpoint file or folder.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output .msgpack path.')
_VARIANT = flags.DEFINE_string(
    'variant', None, 'SegFormer: require this variant (b0..b5); LPIPS: the backbone (alex | vgg).')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'spade / ecgan only: config of the run to warm-start.', lock_config=True)
flags.mark_flags_as_required(['kind', 'input', 'output'])


def main(argv):
  del argv
  path = convert.convert_file(_KIND.value, _INPUT.value, _OUTPUT.value, _VARIANT.value,
                              _CONFIG.value)
  if _KIND.value in ('spade', 'ecgan'):
    print(convert.converted_summary(path))
  print(f'Wrote {path}')


def run():
  """Console entry point `ecgan-convert-weights`."""
  common.run(main)


if __name__ == '__main__':
  run()
