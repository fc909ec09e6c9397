"""ecgan-prepare-data: writes a dataset to ArrayRecord shards with Canny edges precomputed
(optional, for large runs).

  ecgan-prepare-data --config=configs/ade20k.py \
      --config.dataset.root=/data/ADEChallengeData2016 --out=/data/ade20k_prepared --num_shards=64
  ecgan-train --config=configs/ade20k.py --config.dataset.prepared_dir=/data/ade20k_prepared

Each split is stored at the geometry its pipeline reads (train: load size, val: image size), so
training from the shards yields the same batches as training from the raw folders. No TensorFlow.
"""
from absl import app, flags
from ml_collections import config_flags

from ecgan_jax import configuration
from ecgan_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Dataset config file (e.g. configs/ade20k.py).', lock_config=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: config.dataset.prepared_dir).')
_SPLITS = flags.DEFINE_list('splits', ['train', 'val'], 'Splits to write.')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 16, 'ArrayRecord files per split.')
flags.mark_flag_as_required('config')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  config = configuration.validate_config(_CONFIG.value)
  out = _OUT.value or config.dataset.prepared_dir
  if not out:
    raise app.UsageError('Give --out or --config.dataset.prepared_dir')
  meta = pipeline.prepare_dataset(config, out, tuple(_SPLITS.value), _NUM_SHARDS.value,
                                  progress=True)
  for split, m in meta.items():
    print(f'{split}: {m["num_examples"]} examples ({m["num_skipped"]} skipped) in '
          f'{len(m["shards"])} shards at {m["load_size_hw"][0]}x{m["load_size_hw"][1]} -> {out}')


def run():
  """Console entry point `ecgan-prepare-data`."""
  common.run(main)


if __name__ == '__main__':
  run()
