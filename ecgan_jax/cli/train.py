"""ecgan-train: trains ECGAN/ECGAN++ on every local device (and every host, if started as several
processes).

  ecgan-train --config=configs/synthetic.py                  # CPU demo, built-in data
  ecgan-train --config=configs/ade20k.py --workdir=runs/ade20k \
      --config.dataset.root=/data/ADEChallengeData2016 --config.train.batch_size=32
  ecgan-train --config=configs/cityscapes.py:B5 ...           # ablation preset B5

Re-running with the same --workdir resumes from its latest checkpoint. Multi-host: pass
--coordinator_address/--num_processes/--process_id (or the ECGAN_* environment variables, or
--distributed=auto on a cluster JAX detects by itself); see docs/training.md. The console shows a
progress bar and one line per log interval, checkpoint and sample grid; --verbosity=0 adds the
libraries' INFO lines, --verbosity=1 tracebacks of user errors.
"""
import os

from absl import app, flags
from ml_collections import config_flags

from ecgan_jax import configuration
from ecgan_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with :ARGS (ablation preset B1..B8 and/or tiny).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run folder (checkpoints, TensorBoard, samples); default runs/<dataset>.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'Multi-host: host:port of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-host: index of this process.')
_CACHE = flags.DEFINE_string(
    'compilation_cache_dir', None, 'Persistent compilation cache folder (default '
    '$JAX_COMPILATION_CACHE_DIR or ~/.cache/ecgan_jax/jax_cache; "none" turns it off): a second '
    'launch of the same config loads its compiled step instead of recompiling.')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', None, ['auto'], "'auto': let JAX detect the cluster (TPU pod, SLURM, MPI).")
flags.mark_flag_as_required('config')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  configuration.validate_config(config)  # config errors before JAX or the workdir are touched
  from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
  from ecgan_jax.training import distributed  # pylint: disable=import-outside-toplevel
  _runtime.use_default_xla_flags()  # before JAX creates its backend
  _runtime.enable_compilation_cache(_CACHE.value)
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         _DISTRIBUTED.value)
  from ecgan_jax.training import trainer  # pylint: disable=import-outside-toplevel
  workdir = _WORKDIR.value or os.path.join('runs', config.dataset.name)
  trainer.train(config, workdir)


def run():
  """Console entry point `ecgan-train`."""
  common.run(main)


if __name__ == '__main__':
  run()
