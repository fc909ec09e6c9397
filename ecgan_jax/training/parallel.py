"""Runs one step body on many devices: `jax.pmap` or `jax.jit(jax.shard_map(...))`, axis 'batch'.

The step body sees one device's view in both cases: the state unreplicated, the batch [B/D, ...].
Host-side helpers move the state and batches in and out:

  pmap:      state leaves carry a leading local-device axis; batches are [D_local, B/D, ...].
  shard_map: state leaves are global arrays replicated over a 1-D mesh ('batch',) of all devices;
             batches are global [B, ...] arrays sharded on axis 0 (built from each process's part).

On several hosts both run over every device of every process; each process feeds its own share.

shard_map runs with check_vma=False: with the replication checker on, differentiating w.r.t. the
replicated state inserts an implicit psum of gradients, which would make the body's explicit
`pmean` mean something else than under pmap. With it off, both paths run the identical body.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ecgan_jax import _runtime
from ecgan_jax.training import distributed

AXIS = 'batch'


class ParallelStep:
  """Wraps `body(state, batch, frozen) -> (state, metrics)` for pmap or shard_map.

  `devices`: the devices to run on (default: all local devices for pmap, all global devices for
  shard_map). The state argument is donated.
  """

  def __init__(self, body: Callable, parallelism: str = 'pmap',
               devices: Sequence[jax.Device] | None = None, donate: bool = True):
    if parallelism not in ('pmap', 'shard_map'):
      raise ValueError(f'parallelism={parallelism!r} is not one of pmap, shard_map')
    self.parallelism = parallelism
    self._body = body
    self._donate_argnums = (0,) if donate else ()
    if parallelism == 'pmap':
      self.devices = list(devices) if devices is not None else None
      self._identity = jax.pmap(lambda x: x, axis_name=AXIS, devices=self.devices)
      self._stacked_sharding = None  # of the identity's outputs (put_replicated)
      local = self.devices if self.devices is not None else jax.local_devices()
      self.local_devices = [d for d in local if d.process_index == jax.process_index()]
      self.num_devices = len(self.devices) if self.devices is not None else jax.device_count()
    else:
      self.devices = list(devices) if devices is not None else jax.devices()
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
      self._replicated = NamedSharding(self.mesh, P())
      self._sharded = NamedSharding(self.mesh, P(AXIS))
      self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
      self.num_devices = len(self.devices)
    self._fn = self._wrap(body)
    self.num_local_devices = len(self.local_devices)
    self._compiled_everywhere = False  # multi-process runs: passed the post-compile barrier
    self._executables: tuple[Any, str] | None = None
    self._compiled = None
    self._compiling = None  # Future of `_compiled` (compile_ahead)

  def _wrap(self, body: Callable) -> Any:
    """`body` -> its pmap / jit(shard_map) over this runner's devices, state donated."""
    if self.parallelism == 'pmap':
      return jax.pmap(body, axis_name=AXIS, devices=self.devices,
                      donate_argnums=self._donate_argnums)
    mapped = jax.shard_map(body, mesh=self.mesh, in_specs=(P(), P(AXIS), P()),
                           out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=self._donate_argnums)

  def use_executable_cache(self, cache: Any, key: str) -> None:
    """The first call loads its executable from `cache` (a `_runtime.ExecutableCache`; `key`
    names the body, e.g. the run's config) or compiles and saves it; every later call runs that
    executable, so its arguments must keep the first call's shapes, dtypes and shardings (as the
    trainer's do). Single-process runs only."""
    if jax.process_count() > 1:
      raise ValueError('the executable cache is for single-process runs')
    self._executables = (cache, f'{self.parallelism}|{key}')

  def compile_ahead(self, state: Any, batch: Any, frozen: Any) -> None:
    """Loads or compiles the step on a background thread for arguments of these shapes, dtypes
    and shardings (`jax.ShapeDtypeStruct`s, e.g. `abstract_replicated(abstract state)`, or
    arrays), while the caller builds the real ones; the first call waits for it. Needs the
    executable cache (`use_executable_cache`)."""
    if self._executables is None:
      raise ValueError('compile_ahead needs use_executable_cache first')
    if self._compiled is None and self._compiling is None:
      cache, key = self._executables
      self._compiling = _runtime.in_background(
          cache.compile, 'train_step', self._body, (state, batch, frozen), key, self._wrap,
          name='compile train_step')

  def __call__(self, state: Any, batch: Any, frozen: Any) -> tuple[Any, Any]:
    if self._executables is not None:
      if self._compiling is not None:
        self._compiled, self._compiling = self._compiling.result(), None
      if self._compiled is None:
        cache, key = self._executables
        self._compiled = cache.compile('train_step', self._body, (state, batch, frozen), key,
                                       wrap=self._wrap)
      return self._compiled(state, batch, frozen)
    if jax.process_count() > 1 and not self._compiled_everywhere:
      # Compile first (the call below then finds the executable in JAX's caches), then wait for
      # every process: hosts finish compiling minutes apart, and the step's first collective
      # would time out on the slower one (gloo on CPU does after seconds).
      self._fn.lower(state, batch, frozen).compile()
      distributed.barrier('ecgan_jax/train_step_compiled')
      self._compiled_everywhere = True
    return self._fn(state, batch, frozen)

  def lower(self, state: Any, batch: Any, frozen: Any):
    """`jax.stages.Lowered` of the step for these arguments (for compile-time measurements)."""
    return self._fn.lower(state, batch, frozen)

  # ------------------------------------------------------------ host <-> device
  def _stacked(self) -> jax.sharding.Sharding:
    """pmap, one process: the sharding of a pmap'd identity's output (see put_replicated)."""
    if self._stacked_sharding is None:
      probe = np.zeros((len(self.local_devices), 1), np.float32)
      self._stacked_sharding = self._identity(probe).sharding
    return self._stacked_sharding

  def abstract_replicated(self, tree: Any) -> Any:
    """`jax.ShapeDtypeStruct`s of what `put_replicated(tree)` gives (shape, dtype, sharding) for
    a tree of anything with .shape and .dtype (e.g. `jax.eval_shape`'s output): for compiling the
    step before the values exist."""
    if self.parallelism == 'pmap':
      n, sharding = len(self.local_devices), self._stacked()
      return jax.tree.map(lambda x: jax.ShapeDtypeStruct((n, *x.shape), x.dtype,
                                                         sharding=sharding), tree)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=self._replicated), tree)

  def put_replicated(self, tree: Any) -> Any:
    """Host pytree (no device axis) -> the replicated on-device form this runner expects. A tree
    without leaves (the frozen networks at loss.lambda_vgg = 0) is returned as is."""
    if not jax.tree.leaves(tree):
      return tree  # pmap needs at least one mapped argument
    if self.parallelism == 'pmap':
      # The arrays must carry exactly the sharding the step's outputs carry (flax's replicate uses
      # another mesh, which makes the step compile a second time): the sharding of a pmap'd
      # identity's output. One process: put every leaf with that sharding (no program over the
      # whole tree to trace, compile or load); several: through the identity itself.
      stacked = jax.tree.map(lambda x: np.stack([np.asarray(x)] * len(self.local_devices)), tree)
      if jax.process_count() > 1:
        return self._identity(stacked)
      return jax.device_put(stacked, self._stacked())

    def put(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self._replicated, lambda idx: x[idx])
    return jax.tree.map(put, tree)

  def put_batch(self, batch: Any) -> Any:
    """Host batch of this process, leaves [D_local, B/D, ...] -> the runner's batch form."""
    if self.parallelism == 'pmap':
      return jax.tree.map(np.asarray, batch)  # pmap splits the leading axis over its devices

    def put(x):
      x = np.asarray(x)
      local = x.reshape((-1,) + x.shape[2:])
      return jax.make_array_from_process_local_data(self._sharded, local)
    return jax.tree.map(put, batch)

  def get_replicated(self, tree: Any) -> Any:
    """Replicated on-device pytree -> host numpy pytree (a copy of this process's first replica;
    never a view of a device buffer, which a later donating step may overwrite)."""
    if self.parallelism == 'pmap':  # shard 0 is [1, ...]: works on every host of a multi-host run
      return jax.tree.map(lambda x: np.array(x.addressable_shards[0].data, copy=True)[0], tree)
    return jax.tree.map(lambda x: np.array(x.addressable_data(0), copy=True), tree)
