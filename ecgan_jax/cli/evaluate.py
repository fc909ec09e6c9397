"""ecgan-evaluate: FID / KID, mIoU / accuracy and LPIPS diversity of a trained run's EMA generator on
the validation split.

  ecgan-evaluate --config=configs/synthetic.py --workdir=runs/synthetic            # latest step
  ecgan-evaluate --config=configs/ade20k.py --workdir=runs/ade20k --step=200000 \
      --config.dataset.root=/data/ADEChallengeData2016 \
      --config.eval.inception_checkpoint=weights/pt_inception-2015-12-05-6726825d.pth \
      --config.eval.segmenter_checkpoint=weights/segformer-b0-ade20k.msgpack

Writes workdir/eval/<step>/{metrics.json, images/, labels/, real/, index.html} and prints a table.
The generator is the checkpoint's (its saved config's model/loss/optim fields; a warning names any
that --config changes). Networks without weights are randomly initialised and the log says so
(docs/evaluation.md).
"""
import logging

from absl import app, flags
from ml_collections import config_flags

from ecgan_jax import configuration
from ecgan_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with :ARGS (B1..B8, tiny): the data and evaluation '
    "settings; the networks come from the config saved with the checkpoint.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder holding checkpoints/.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
_NUM_EXAMPLES = flags.DEFINE_integer(
    'num_examples', None, 'Validation images to use (default config.eval.num_examples: all).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.getLogger().setLevel(logging.INFO)
  config = _CONFIG.value
  configuration.validate_config(config)
  from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
  from ecgan_jax.evaluation import runner  # pylint: disable=import-outside-toplevel
  _runtime.use_default_xla_flags()  # before JAX creates its backend
  _runtime.enable_compilation_cache()
  metrics = runner.evaluate(config, _WORKDIR.value, _STEP.value, num_examples=_NUM_EXAMPLES.value)
  print(runner.format_table(metrics), flush=True)


def run():
  """Console entry point `ecgan-evaluate`."""
  common.run(main)


if __name__ == '__main__':
  run()
