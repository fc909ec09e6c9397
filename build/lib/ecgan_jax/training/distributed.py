"""Multi-host start-up: `jax.distributed.initialize` when flags or the environment ask for it.

Three ways to say "several processes":
  * explicit arguments (the CLI's --coordinator_address / --num_processes / --process_id);
  * the environment variables ECGAN_COORDINATOR_ADDRESS, ECGAN_NUM_PROCESSES, ECGAN_PROCESS_ID;
  * a cluster JAX detects by itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes), requested with
    ECGAN_DISTRIBUTED=auto (or `--distributed=auto`): `jax.distributed.initialize()` with no args.
On CPU the cross-process collectives need gloo, which is switched on here before initialising.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

import jax

log = logging.getLogger(__name__)

ENV_COORDINATOR = 'ECGAN_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'ECGAN_NUM_PROCESSES'
ENV_PROCESS_ID = 'ECGAN_PROCESS_ID'
ENV_AUTO = 'ECGAN_DISTRIBUTED'


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, mode: str | None = None,
            environ: Mapping[str, str] | None = None) -> dict | None:
  """The keyword arguments for `jax.distributed.initialize`, or None for a single process.

  Explicit arguments win over the environment. `mode='auto'` returns {} (JAX's cluster detection).
  Raises ValueError for an incomplete explicit setup (e.g. an address without a process id).
  """
  env = os.environ if environ is None else environ
  coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
  if num_processes is None and env.get(ENV_NUM_PROCESSES):
    num_processes = int(env[ENV_NUM_PROCESSES])
  if process_id is None and env.get(ENV_PROCESS_ID):
    process_id = int(env[ENV_PROCESS_ID])
  mode = mode or env.get(ENV_AUTO) or None
  if coordinator_address is None and num_processes is None and process_id is None:
    return {} if mode == 'auto' else None
  if coordinator_address is None or num_processes is None or process_id is None:
    raise ValueError(
        'Multi-host training needs all of coordinator address, number of processes and process id '
        f'(got {coordinator_address!r}, {num_processes!r}, {process_id!r}); set the --coordinator_'
        f'address/--num_processes/--process_id flags or {ENV_COORDINATOR}/{ENV_NUM_PROCESSES}/'
        f'{ENV_PROCESS_ID}')
  if num_processes == 1:
    return None
  if not 0 <= process_id < num_processes:
    raise ValueError(f'process_id={process_id} is not in [0, {num_processes})')
  return dict(coordinator_address=coordinator_address, num_processes=num_processes,
              process_id=process_id)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, mode: str | None = None) -> bool:
  """Initialises JAX's distributed runtime if asked to (see `resolve`); returns True if it did.

  Must run before any other JAX call that touches devices.
  """
  kwargs = resolve(coordinator_address, num_processes, process_id, mode)
  if kwargs is None:
    return False
  platforms = os.environ.get('JAX_PLATFORMS', '') or str(jax.config.jax_platforms or '')
  if 'cpu' in platforms.split(',') or not platforms:
    # Harmless on GPU/TPU; required for cross-process collectives on CPU.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  log.info('Distributed runtime: process %d of %d, %d local / %d global devices',
           jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def barrier(name: str, timeout_s: float = 3600.0) -> None:
  """Blocks until every process reaches the barrier `name` (no-op for a single process).

  It goes through the coordination service, not a device collective, so it may wait as long as
  `timeout_s`: use it where processes can be minutes apart (one host still compiling), which a
  first device collective would not survive (gloo on CPU gives up after seconds).
  """
  if jax.process_count() == 1:
    return
  # jax has no public barrier in the coordination service; Orbax and jax's own array serialisation
  # use this client method too.
  from jax._src import distributed as jax_distributed  # pylint: disable=import-outside-toplevel
  jax_distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))
