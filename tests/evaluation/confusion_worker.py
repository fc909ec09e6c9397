"""One process of a 2-process x 4-device confusion-matrix run, for test_segmentation_metrics.py.

  python tests/evaluation/confusion_worker.py PROCESS_ID NUM_PROCESSES PORT

Every process draws the same global (label, pred) [8, 2, 12, 12] and keeps its 8/n device rows;
it prints the psum'd matrix of a multi-process pmap and the matrix of its own rows summed over
processes on the host, as JSON.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

if __name__ == '__main__':
  pid, nproc, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  from ecgan_jax.training import distributed
  distributed.initialize(f'127.0.0.1:{port}', nproc, pid)
  import functools

  import jax
  import jax.numpy as jnp
  import numpy as np

  from ecgan_jax.evaluation import segmentation as seg
  from ecgan_jax.training import distributed as dist
  assert jax.device_count() == 8 and jax.process_count() == nproc, jax.devices()
  rng = np.random.default_rng(2)
  label, pred = rng.integers(-1, 7, (8, 2, 12, 12)), rng.integers(0, 6, (8, 2, 12, 12))
  k = 8 // nproc
  mine = slice(pid * k, (pid + 1) * k)
  fn = jax.pmap(functools.partial(seg.confusion_matrix, num_classes=6, axis_name='batch'),
                axis_name='batch')
  dist.barrier('confusion_worker/start')
  psummed = fn(jnp.asarray(label[mine]), jnp.asarray(pred[mine]))
  device0 = np.asarray(psummed.addressable_shards[0].data)[0]
  local = np.asarray(seg.confusion_matrix(jnp.asarray(label[mine]), jnp.asarray(pred[mine]), 6))
  host_sum = seg.sum_over_processes(local)
  print('RESULT', json.dumps({'process': pid, 'psum': device0.tolist(), 'host_sum': host_sum.tolist()}),
        flush=True)
