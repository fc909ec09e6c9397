"""Orbax checkpoints of the train state, the grain data iterator and the config.

One checkpoint step directory holds three items:
  'state'  the train state as unreplicated host (numpy) arrays, saved with StandardSave and restored
           onto an abstract target, so a checkpoint written on N devices restores on M devices;
  'data'   the grain iterator position (grain's Orbax handler), one JSON file per process;
  'config' the run's config as JSON (never read back into the run; evaluation and `inference.load`
           take the networks from it, `configuration.with_trained_networks`).
Saves are asynchronous; `wait_until_finished` (also called by `close`) must run before the process
exits, which `Checkpointer` guarantees when used as a context manager.

`ShutdownSignal` turns SIGTERM/SIGINT into a flag the training loop polls: it then saves and exits.
"""
from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from ecgan_jax import configuration

log = logging.getLogger(__name__)

STATE, DATA, CONFIG = 'state', 'data', 'config'


def to_host(tree: Any) -> Any:
  """Copies every array leaf into a fresh host numpy array; leaves other leaves alone.

  Always a copy: on CPU `device_get` may return a view of the device buffer, and the training
  step donates (reuses) those buffers while an async save is still writing them.
  """
  return jax.tree.map(lambda x: np.array(jax.device_get(x), copy=True)
                      if hasattr(x, 'shape') else x, tree)


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs without sharding of `tree`: as a restore target, Orbax returns numpy arrays."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                      if not isinstance(x, jax.ShapeDtypeStruct)
                      else jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


class Checkpointer:
  """Orbax CheckpointManager for (state, data iterator, config) with async saves, keeping the last
  `max_to_keep` checkpoints plus every milestone (steps divisible by `keep_every`; 0: none), so
  off-schedule saves (SIGTERM) never rotate a milestone away.

  Usage:
    with Checkpointer(workdir / 'checkpoints', max_to_keep=3) as ckpt:
      if ckpt.latest_step() is not None:
        state = ckpt.restore(abstract_state, data_iterator=it)
      ...
      ckpt.save(step, state, data_iterator=it, config=config)
  """

  def __init__(self, directory: str | epath.Path, *, max_to_keep: int = 3, keep_every: int = 0,
               async_checkpointing: bool = True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=int(keep_every) or None,
        enable_async_checkpointing=async_checkpointing, create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=(STATE, DATA, CONFIG))

  # ---------------------------------------------------------------- queries
  def latest_step(self) -> int | None:
    """Newest finalised step in the directory, or None (partial/tmp saves are never listed)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  # ---------------------------------------------------------------- save / restore
  def save(self, step: int, state: Any, *, data_iterator: Any = None, config: Any = None,
           force: bool = True) -> bool:
    """Starts an async save of `state` (any pytree; device arrays are fetched to host first).

    The iterator position is read now, synchronously, so later `next()` calls do not leak into
    this checkpoint. Returns whether a save was started.
    """
    items = {STATE: ocp.args.StandardSave(to_host(state))}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    if config is not None:
      items[CONFIG] = ocp.args.JsonSave(json.loads(config.to_json_best_effort())
                                        if hasattr(config, 'to_json_best_effort') else config)
    saved = self._manager.save(int(step), args=ocp.args.Composite(**items), force=force)
    if saved:
      log.info('step %d: checkpoint saving to %s', step, self.directory / str(int(step)))
    return saved

  def restore(self, abstract_state: Any, *, step: int | None = None,
              data_iterator: Any = None) -> Any:
    """Restores `state` as host numpy arrays shaped like `abstract_state` (ShapeDtypeStructs or
    arrays, no device axis), and, if given, moves `data_iterator` to the saved position in place.

    `step=None` picks the latest step. Raises FileNotFoundError if there is no checkpoint.
    """
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {self.directory}')
    target = abstract_like(abstract_state)
    items = {STATE: ocp.args.StandardRestore(target)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    def mismatch(what):
      return configuration.ConfigError(
          f'The checkpoint of step {step} in {self.directory} does not fit this config (the saved '
          f'state has other parts or shapes: {what}). Resume with the config it was trained '
          'with, or start a new run with another --workdir.')

    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:  # the tree structures differ
      raise mismatch(str(e).strip().splitlines()[0][:300] if str(e).strip()
                     else type(e).__name__) from e
    for (path, want), got in zip(jax.tree_util.tree_flatten_with_path(target)[0],
                                 jax.tree.leaves(restored[STATE])):
      if tuple(want.shape) != tuple(np.shape(got)):  # Orbax restores other shapes silently
        raise mismatch(f'{jax.tree_util.keystr(path)} is saved as {tuple(np.shape(got))}, this '
                       f'config needs {tuple(want.shape)}')
    log.info('Restored checkpoint step %d from %s', step, self.directory)
    return restored[STATE]

  def restore_config(self, step: int | None = None) -> dict | None:
    """The config saved with `step` (latest by default) as a plain dict; None if it has none."""
    step = self.latest_step() if step is None else int(step)
    try:
      saved = self._manager.restore(step, args=ocp.args.Composite(
          **{CONFIG: ocp.args.JsonRestore()}))[CONFIG]
    except KeyError:  # saved without config=
      return None
    return json.loads(saved) if isinstance(saved, str) else saved

  # ---------------------------------------------------------------- lifetime
  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class ShutdownSignal:
  """Context manager that records SIGTERM/SIGINT instead of dying, so the loop can save and exit.

  `requested` is True after a signal; the original handlers come back on exit. A second SIGINT while
  a shutdown is pending raises KeyboardInterrupt (an impatient Ctrl-C still works). Only installs
  handlers in the main thread (signal handlers cannot be set elsewhere).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = True
    self.signum = signum
    log.warning('Received %s: saving a checkpoint and exiting at the end of this step',
                signal.Signals(signum).name)

  def __enter__(self) -> 'ShutdownSignal':
    if threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, h in self._previous.items():
      signal.signal(s, h)
    self._previous.clear()
