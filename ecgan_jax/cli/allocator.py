"""A faster malloc for the commands: they re-execute themselves once with it preloaded.

XLA's compiler makes and frees millions of small objects; under glibc's malloc about 13% of a
training-step compile is spent in malloc/free. gperftools' tcmalloc (Debian/Ubuntu package
`libtcmalloc-minimal4`, conda `gperftools`) or jemalloc (`libjemalloc2`) compile the step 15-20%
sooner with a smaller peak RSS (docs/performance.md, `benchmarks/compile_time.py`). A process
chooses its allocator when it starts, so a command that finds one installed, and none preloaded,
re-executes itself (same pid, same arguments) with LD_PRELOAD set. Linux only; stdlib only, so
that it runs before JAX is imported.

ECGAN_JAX_MALLOC selects: `auto` (default: tcmalloc, else jemalloc, else glibc's malloc),
`system` (never re-execute), or the path of a shared library to preload.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

ENV = 'ECGAN_JAX_MALLOC'
# Set in the re-executed process: a library that failed to preload is not retried in a loop.
_DONE = 'ECGAN_JAX_MALLOC_REEXECUTED'
_ALLOCATORS = ('tcmalloc', 'jemalloc', 'mimalloc')  # an LD_PRELOAD naming one is kept as it is
LIBRARIES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4', 'libjemalloc.so.2')
# gperftools reports each allocation above 1 GiB on stderr; a training step makes such buffers.
_QUIET = {'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD': str(1 << 50)}


def library_dirs() -> list[str]:
  """Where `find_library` looks: the environment's own lib folder (conda), then the system's."""
  multiarch = f'/usr/lib/{os.uname().machine}-linux-gnu' if hasattr(os, 'uname') else ''
  dirs = [os.path.join(sys.prefix, 'lib'), multiarch, '/usr/lib64', '/usr/lib', '/usr/local/lib']
  return [d for d in dirs if d]


def find_library(dirs: Sequence[str] | None = None) -> str | None:
  """The path of the first of `LIBRARIES` (in that order) found in `dirs`, or None."""
  for name in LIBRARIES:
    for d in library_dirs() if dirs is None else dirs:
      path = os.path.join(d, name)
      if os.path.isfile(path):
        return path
  return None


def reexec_environment(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
  """The environment to re-execute this process with, or None to go on as it is: not Linux,
  ECGAN_JAX_MALLOC=system, an allocator already preloaded, already re-executed once, or none
  installed. Raises FileNotFoundError for an ECGAN_JAX_MALLOC path that does not exist."""
  environ = os.environ if environ is None else environ
  setting = environ.get(ENV, 'auto').strip() or 'auto'
  preload = environ.get('LD_PRELOAD', '')
  if (not sys.platform.startswith('linux') or setting == 'system' or environ.get(_DONE)
      or any(name in preload for name in _ALLOCATORS)):
    return None
  if setting == 'auto':
    library = find_library()
    if library is None:
      return None
  elif not os.path.isfile(setting):
    raise FileNotFoundError(f'{ENV}={setting}: no such file (give the path of a malloc shared '
                            "library such as libtcmalloc_minimal.so.4, 'auto' or 'system')")
  else:
    library = setting
  env = dict(environ)
  env['LD_PRELOAD'] = ':'.join(p for p in (library, preload) if p)
  env[_DONE] = library
  for key, value in _QUIET.items():
    env.setdefault(key, value)
  return env


def preload() -> None:
  """Re-executes the running command with a faster malloc preloaded, when `reexec_environment`
  says so; otherwise returns. Call it first thing in a console entry point, never in a library
  function or a test (it replaces the process)."""
  try:
    env = reexec_environment()
  except FileNotFoundError as e:
    print(f'{os.path.basename(sys.argv[0])}: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  # orig_argv keeps the interpreter's own options and `-m module` (argv[0] is the script).
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
