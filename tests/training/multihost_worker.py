"""One process of a (simulated) multi-host run of the micro config, for test_multihost.py.

  python tests/training/multihost_worker.py WORKDIR PROCESS_ID NUM_PROCESSES PORT

Every process reads the same single-process pipeline of 8 device rows and keeps its own rows
(process i of n: rows 8i/n .. 8(i+1)/n), so the global batch does not depend on the number of
processes and a 2-process run can be compared with a 1-process run. Devices per process come from
XLA_FLAGS in the environment.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class KeepRows:
  """Host batch [8, b, ...] -> this process's device rows [8/n, b, ...]."""

  def __init__(self, process_id: int, num_processes: int):
    self.process_id, self.num_processes = process_id, num_processes

  def __repr__(self):
    return f'KeepRows({self.process_id}, {self.num_processes})'

  def __call__(self, batch):
    k = 8 // self.num_processes
    return {key: v[self.process_id * k:(self.process_id + 1) * k] for key, v in batch.items()}


def micro_multihost_config():
  import helpers  # pylint: disable=import-outside-toplevel
  return helpers.equivalence_config()  # the config of test_step's equivalence test


if __name__ == '__main__':
  workdir, pid, nproc, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
  from ecgan_jax.training import distributed
  distributed.initialize(f'127.0.0.1:{port}', nproc, pid)
  import jax
  from ecgan_jax.data import pipeline
  from ecgan_jax.training import trainer
  assert jax.device_count() == 8 and jax.process_count() == nproc, jax.devices()
  config = micro_multihost_config()
  ds = pipeline.build_train_dataset(config, 8, process_index=0, process_count=1)
  import helpers  # pylint: disable=import-outside-toplevel
  ds = ds.map(helpers.RollExamples()).map(KeepRows(pid, nproc))
  trainer.train(config, workdir, train_iterator=iter(ds))
  print(f'process {pid} done', flush=True)
