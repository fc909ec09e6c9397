"""Process-wide JAX runtime settings: the persistent compilation cache and cheap compiles for
programs that run once.

`enable_compilation_cache()` is called where a command starts (the train launcher); a second
launch of the same config then loads its compiled programs from disk instead of recompiling.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax

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


def jit_run_once(fn: Any, **kwargs) -> Any:
  """`jax.jit(fn)` compiled without LLVM optimisation: for programs that run once (init)."""
  return jax.jit(fn, compiler_options=RUN_ONCE_COMPILER_OPTIONS, **kwargs)
