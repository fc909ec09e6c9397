"""Where a run's XLA compile time went, read back from JAX's persistent compilation cache.

  python benchmarks/cache_compile_times.py ~/.cache/ecgan_jax/jax_cache      # .ci/run's default
  python benchmarks/cache_compile_times.py /tmp/cache --top=40

Point it at the folder a run filled from empty (`.ci/run`'s $JAX_COMPILATION_CACHE_DIR, or
`tests/conftest.py`'s temporary one kept with $JAX_COMPILATION_CACHE_DIR set): every program the
run compiled is one entry there (the tests set JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0), and
JAX stores each entry's compile time with it. It prints the total, the time and count per program
name (`jit__fun` is a `jax.pmap` program, `jit_<op>` an op run eagerly outside jit), and the
slowest entries. JAX keeps whole seconds (it truncates), so programs that compiled in under a
second count as 0 s: the count column says how many there were. Nothing is compiled or run.
"""
import argparse
import collections
import os
import sys

from jax._src import compilation_cache  # the cache's own (de)compression and entry format


def read_entries(folder: str) -> list[tuple[str, int, int]]:
  """(file name, compile seconds as JAX stored them, compressed bytes) per cache entry."""
  entries = []
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if not (name.endswith('-cache') and os.path.isfile(path)):
      continue  # JAX's '-atime' files and our own executable cache's subfolder
    with open(path, 'rb') as f:
      raw = f.read()
    _, seconds = compilation_cache.extract_executable_and_time(
        compilation_cache.decompress_executable(raw))
    entries.append((name, seconds, len(raw)))
  return entries


def program_name(entry_name: str) -> str:
  """'jit_train_step-<sha256>-cache' -> 'jit_train_step'."""
  return entry_name[:-len('-cache')].rsplit('-', 1)[0]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('folder', help='a JAX persistent compilation cache folder')
  parser.add_argument('--top', type=int, default=20, help='rows per table')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.folder):
    print(f'error: {args.folder} is not a folder', file=sys.stderr)
    return 2
  entries = read_entries(args.folder)
  if not entries:
    print(f'error: no JAX cache entries (*-cache files) in {args.folder}', file=sys.stderr)
    return 2
  by_name = collections.defaultdict(lambda: [0, 0])
  for name, seconds, _ in entries:
    totals = by_name[program_name(name)]
    totals[0] += seconds
    totals[1] += 1
  print(f'{args.folder}: {len(entries)} entries, {sum(s for _, s, _ in entries)} s of compile '
        f'(whole seconds per entry; {sum(1 for _, s, _ in entries if s == 0)} entries under 1 s)')
  print(f'\n{"seconds":>8} {"entries":>8}  program')
  for name, (seconds, count) in sorted(by_name.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[
      :args.top]:
    print(f'{seconds:8d} {count:8d}  {name}')
  print(f'\n{"seconds":>8} {"MB":>8}  slowest entries')
  for name, seconds, size in sorted(entries, key=lambda e: -e[1])[:args.top]:
    print(f'{seconds:8d} {size / 1e6:8.1f}  {name}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
