"""Process-wide JAX runtime settings: default XLA flags, the persistent compilation cache, the
executable cache beside it, and cheap compiles for programs that run once.

`use_default_xla_flags()` is called by the commands that compile (`ecgan_jax.cli`: train, evaluate,
synthesize, demo) before JAX creates its backend; a library user who wants the same programs calls
it too, or sets $XLA_FLAGS.

`enable_compilation_cache()` is called where a command starts (the train launcher); a second
launch of the same config then loads its compiled programs from disk instead of recompiling.
`executable_cache()` goes one step further for the trainer's init and step: their executables are
saved keyed on the config, so a later launch loads them without tracing the model in Python.
`in_background` runs such a compile or load on a thread, so the trainer's programs overlap.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
import os
import pickle
import threading
from typing import Any, Callable

import jax
import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = 'JAX_COMPILATION_CACHE_DIR'
MIN_COMPILE_TIME_ENV = 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'
# Programs that compile faster than this are not written to the cache (small eager ops).
DEFAULT_MIN_COMPILE_TIME_SECS = 0.5

# For programs that run once (parameter initialisation): LLVM's optimisation passes cost most of
# their compile time (3.1x on the micro config's training-state init: 270 s against 845 s on a
# loaded 2-core machine) and nothing at run time worth having. The random bits are the same; the
# float transforms of them (erf_inv, scaling) may differ in the last bit from an optimised build.
# On a GPU, autotuning (timing each cuDNN / GEMM algorithm for every conv of the init's forward
# passes) buys a program that runs once nothing either; level 0 takes the default algorithms. The
# B8 paper-size init took 80-91 s on an H200 without this option (docs/performance.md, "GPU");
# its effect there is not measured yet. The CPU backend ignores the GPU option.
RUN_ONCE_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0, 'xla_gpu_autotune_level': 0}


def default_cache_dir() -> str:
  """$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/ecgan_jax/jax_cache."""
  if os.environ.get(CACHE_ENV):
    return os.environ[CACHE_ENV]
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'ecgan_jax', 'jax_cache')


def enable_compilation_cache(cache_dir: str | None = None) -> str | None:
  """Turns JAX's persistent compilation cache on in `cache_dir` (default: `default_cache_dir()`);
  '' or 'none' turns it off. Returns the folder used, or None when off or not writable."""
  path = default_cache_dir() if cache_dir is None else cache_dir
  if not path or path.lower() == 'none':
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:  # a read-only home must not stop training
    log.warning('Compilation cache off: cannot create %s (%s)', path, e)
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  if not os.environ.get(MIN_COMPILE_TIME_ENV):
    jax.config.update('jax_persistent_cache_min_compile_time_secs', DEFAULT_MIN_COMPILE_TIME_SECS)
  return path


# XLA flags the commands (`ecgan_jax.cli`) add to $XLA_FLAGS unless it already names them, for the
# jaxlib versions they were measured on (XLA aborts on a flag it does not know, and these are
# experimental). No YNNPACK fusions on XLA:CPU: loading a compiled step (a warm launch, a resume)
# spent about half its time deserializing YNNPACK fusion thunks. The synthetic demo's warm launch
# reached its first step in 14.3 s instead of 21-24 s; the paper-size B8 step ran as fast
# (7.9-8.7 s/it either way) and compiled 5-10% slower (docs/performance.md, "Fast start").
DEFAULT_XLA_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=',)
_DEFAULT_XLA_FLAGS_JAXLIB = ('0.10.',)  # version prefixes where DEFAULT_XLA_FLAGS were measured


def with_default_xla_flags(flags: str = '') -> str:
  """`flags` (an $XLA_FLAGS value) plus each of DEFAULT_XLA_FLAGS whose name it does not set; as
  given on jaxlib versions where those flags were not measured."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  given = flags.split()
  if not jaxlib.__version__.startswith(_DEFAULT_XLA_FLAGS_JAXLIB):
    return ' '.join(given)
  named = {f.split('=', 1)[0] for f in given}
  return ' '.join(given + [f for f in DEFAULT_XLA_FLAGS if f.split('=', 1)[0] not in named])


def use_default_xla_flags() -> None:
  """Sets $XLA_FLAGS to `with_default_xla_flags($XLA_FLAGS)`. XLA reads it once, when JAX creates
  its first backend: call this before anything touches a device (a warning says when too late)."""
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  flags = with_default_xla_flags(os.environ.get('XLA_FLAGS', ''))
  if flags.split() == os.environ.get('XLA_FLAGS', '').split():
    return
  if xla_bridge.backends_are_initialized():
    log.warning('Not setting XLA_FLAGS=%r: JAX has already created its backend', flags)
    return
  os.environ['XLA_FLAGS'] = flags


def jit_run_once(fn: Any, **kwargs) -> Any:
  """`jax.jit(fn)` compiled without LLVM optimisation: for programs that run once (init)."""
  return jax.jit(fn, compiler_options=RUN_ONCE_COMPILER_OPTIONS, **kwargs)


# ------------------------------------------------------------------------- executable cache
EXECUTABLES_SUBDIR = 'ecgan_executables'
# jax.config options that do not change a traced program (where things are written or logged).
_CONFIG_NOT_IN_KEY = ('cache', 'log', 'dump', 'explain', 'debug_log', 'traceback', 'pprint',
                      'source_url', 'distributed_debug')
_KEPT_PER_NAME = 8  # newest executables kept per program name; older ones are deleted


@functools.lru_cache(maxsize=None)
def source_fingerprint() -> str:
  """sha256 of every .py file of the ecgan_jax package (relative path and bytes): a program traced
  from other code gets another executable-cache key."""
  root = os.path.dirname(os.path.abspath(__file__))
  digest = hashlib.sha256()
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith('.py')):
      path = os.path.join(folder, name)
      digest.update(os.path.relpath(path, root).encode())
      with open(path, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()


def _environment_key() -> list[str]:
  """Everything besides the program's own inputs that decides what tracing and compiling give:
  library versions, the package's source, the devices, XLA_FLAGS and jax.config."""
  import importlib.metadata  # pylint: disable=import-outside-toplevel
  versions = []
  for dist in ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'numpy'):
    try:
      versions.append(f'{dist}={importlib.metadata.version(dist)}')
    except importlib.metadata.PackageNotFoundError:
      versions.append(f'{dist}=none')
  devices = jax.devices()
  config = sorted((k, repr(v)) for k, v in jax.config.values.items()
                  if not any(word in k for word in _CONFIG_NOT_IN_KEY))
  return [*versions, source_fingerprint(), jax.default_backend(),
          devices[0].client.platform_version,
          repr([(d.id, d.device_kind, d.process_index) for d in devices]),
          f'processes={jax.process_count()}', os.environ.get('XLA_FLAGS', ''), repr(config)]


def _arguments_key(args: tuple) -> list[str]:
  """The arguments' tree structure, abstract values (shape, dtype, weak type) and shardings."""
  leaves, tree = jax.tree.flatten(args)

  def sig(x):  # a jax.ShapeDtypeStruct with a sharding keys as the array it stands for
    sharding = getattr(x, 'sharding', None)
    sharding = 'host' if sharding is None else str(sharding)
    return f'{jax.typeof(x)}@{sharding}'
  return [str(tree), *map(sig, leaves)]


class ExecutableCache:
  """Compiled programs on disk, loaded on a later launch without tracing, lowering or compiling.

  JAX's persistent compilation cache saves the compile, but its key is the lowered program, so every
  launch still traces the training step in Python first (docs/performance.md, "Fast start"). This
  cache keys a serialized executable on what decides the program instead: the program's name, the
  caller's `key` (the run's config), the arguments' shapes, dtypes and shardings, the package's
  source (`source_fingerprint`), library versions, devices, XLA_FLAGS and jax.config. Anything else
  a traced function reads (a file, a global) must be part of `key`. An unreadable or incompatible
  entry is ignored (compiled again, with a warning). Only programs XLA compiled afresh are saved
  (`_compile_noting_origin`). Single-process runs only.

  Entries are pickles (jax.experimental.serialize_executable): load only a cache folder you own.
  """

  def __init__(self, directory: str):
    self.directory = directory

  def _digest(self, name: str, key: str, args: tuple) -> str:
    return hashlib.sha256('\0'.join([name, key, *_environment_key(),
                                     *_arguments_key(args)]).encode()).hexdigest()[:32]

  def compile(self, name: str, fn: Callable, args: tuple, key: str,
              wrap: Callable[[Callable], Any] = jax.jit) -> Any:
    """`wrap(fn)` (a jax.jit / jax.pmap of the Python function `fn`) compiled for `args`: loaded
    from the cache when the same program was compiled before, else compiled (through JAX's own
    caches) and, if XLA compiled it afresh, saved. Returns a jax.stages.Compiled."""
    from jax.experimental import serialize_executable  # pylint: disable=import-outside-toplevel
    digest = self._digest(name, key, args)
    path = os.path.join(self.directory, f'{name}-{digest}.exe')
    if os.path.exists(path):
      try:
        with open(path, 'rb') as f:
          blob, in_tree, out_tree, device_ids = pickle.load(f)
        by_id = {d.id: d for d in jax.devices()}
        compiled = serialize_executable.deserialize_and_load(
            blob, in_tree, out_tree, execution_devices=[by_id[i] for i in device_ids])
        os.utime(path)  # most recently used: kept by the pruning below
        log.info('Loaded the compiled %s from %s', name, path)
        return compiled
      except Exception as e:  # pylint: disable=broad-except
        log.warning('Ignoring the cached executable %s (%s: %s); compiling again', path,
                    type(e).__name__, e)
    compiled, fresh = _compile_noting_origin(wrap(fn), args)
    if not fresh:
      log.info('Not caching the compiled %s: it was loaded from JAX\'s compilation cache, and '
               'XLA:CPU cannot serialize a loaded executable again', name)
      return compiled
    try:
      blob, in_tree, out_tree = serialize_executable.serialize(compiled)
      # The devices it runs on, in order (jax.stages.Compiled has no public accessor).
      executable = compiled._executable.xla_executable  # pylint: disable=protected-access
      device_ids = [d.id for d in executable.local_devices()]
      self._write(path, pickle.dumps((blob, in_tree, out_tree, device_ids)))
      self._prune(name)
    except Exception as e:  # pylint: disable=broad-except  (a cache must never stop a run)
      log.info('Not caching the compiled %s: %s: %s', name, type(e).__name__, e)
    return compiled

  def eval_shape(self, name: str, fn: Callable, args: tuple, key: str) -> Any:
    """`jax.eval_shape(fn, *args)` (weak types dropped), kept on disk like the executables: a
    later launch reads the shapes instead of tracing `fn` (seconds for the training state)."""
    digest = self._digest(name, key, args)
    path = os.path.join(self.directory, f'{name}-{digest}.shapes')
    if os.path.exists(path):
      try:
        with open(path, 'rb') as f:
          treedef, leaves = pickle.load(f)
        os.utime(path)
        return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
      except Exception as e:  # pylint: disable=broad-except
        log.warning('Ignoring the cached shapes %s (%s: %s)', path, type(e).__name__, e)
    leaves, treedef = jax.tree.flatten(jax.eval_shape(fn, *args))
    leaves = [(tuple(x.shape), np.dtype(x.dtype)) for x in leaves]
    try:
      self._write(path, pickle.dumps((treedef, leaves)))
      self._prune(name, '.shapes')
    except Exception as e:  # pylint: disable=broad-except  (a cache must never stop a run)
      log.info('Not caching the shapes of %s: %s: %s', name, type(e).__name__, e)
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])

  def _write(self, path: str, data: bytes) -> None:
    os.makedirs(self.directory, exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)  # atomic: a killed launch leaves no half-written entry

  def _prune(self, name: str, suffix: str = '.exe') -> None:
    entries = sorted((os.path.join(self.directory, f) for f in os.listdir(self.directory)
                      if f.startswith(name + '-') and f.endswith(suffix)),
                     key=os.path.getmtime, reverse=True)
    for path in entries[_KEPT_PER_NAME:]:
      try:
        os.remove(path)
      except OSError:
        pass


# jax.monitoring events of a compile: XLA compiled (or loaded) a program; it came from JAX's
# persistent compilation cache.
_BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_PERSISTENT_CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


def _compile_noting_origin(jitted: Any, args: tuple) -> tuple[Any, bool]:
  """(`jitted` compiled for `args`, whether XLA compiled it just now). False when it was loaded from
  JAX's persistent compilation cache or reused from memory: XLA:CPU cannot serialize an executable
  it loaded from serialized form again (the copy fails at run time with "Function ... not found"),
  so only fresh compiles may be saved. If JAX renames these events, nothing is saved (never a
  broken entry)."""
  events, thread = [], threading.get_ident()

  def on_event(event: str, *unused_args, **unused_kwargs) -> None:
    if threading.get_ident() == thread:  # not another thread's compile (`in_background`)
      events.append(event)
  jax.monitoring.register_event_listener(on_event)
  jax.monitoring.register_event_duration_secs_listener(on_event)
  try:
    compiled = jitted.lower(*args).compile()
  finally:
    jax.monitoring.unregister_event_listener(on_event)
    jax.monitoring.unregister_event_duration_listener(on_event)
  return compiled, _BACKEND_COMPILE_EVENT in events and _PERSISTENT_CACHE_HIT_EVENT not in events


def in_background(fn: Callable, *args: Any, name: str) -> concurrent.futures.Future:
  """Runs `fn(*args)` on a new daemon thread; its result (or exception) comes from the Future.

  For compiling or loading several programs at once: XLA compiles and loads with the GIL
  released, so they overlap on several cores. A daemon thread, not an executor's: Ctrl-C does not
  wait for a compile to finish."""
  future: concurrent.futures.Future = concurrent.futures.Future()

  def run() -> None:
    try:
      future.set_result(fn(*args))
    except BaseException as e:  # pylint: disable=broad-except  (re-raised by future.result())
      future.set_exception(e)
  threading.Thread(target=run, name=name, daemon=True).start()
  return future


def executable_cache(compilation_cache_dir: str | None = None) -> ExecutableCache | None:
  """The executable cache in a subfolder of `compilation_cache_dir` (default: the folder of JAX's
  persistent compilation cache, see `enable_compilation_cache`), or None when that is off or the
  run has several processes."""
  path = (jax.config.values.get('jax_compilation_cache_dir') if compilation_cache_dir is None
          else compilation_cache_dir)
  if not path or jax.process_count() > 1:
    return None
  return ExecutableCache(os.path.join(path, EXECUTABLES_SUBDIR))
