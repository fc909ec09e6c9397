"""How many XLA programs each test compiles in the pytest process, and how long they take.

  python benchmarks/compiles_per_test.py tests/losses tests/convert          # pytest arguments
  python benchmarks/compiles_per_test.py --top=40 --json=/tmp/c.json tests/models -x

It runs pytest in this process with itself as a plugin. The plugin adds up JAX's backend-compile
events (`/jax/core/compile/backend_compile_duration`) per test and prints the tests with the most
compile seconds and the most compiles. A flax `apply` or `jax.grad` outside jit compiles every
op for its own shapes, at 25-40 ms each on 2 cores, so a test with hundreds of compiles runs
eagerly what one jitted program would do (docs/performance.md, "Test-suite speed"). Compiles in
child processes (the trainer tests) are not counted. JAX's persistent cache is not counted as a
compile: set JAX_COMPILATION_CACHE_DIR to an empty folder (tests/conftest.py makes a fresh one
when it is unset) to count every program.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


class CompileCounter:
  """pytest plugin: per test id, [compiles, compile seconds, wall seconds]."""

  def __init__(self):
    self.current = '<collection and fixtures outside tests>'
    self.stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])

  def pytest_configure(self, config):  # pylint: disable=unused-argument
    # jax is imported only now, after tests/conftest.py set the environment it reads at import.
    from jax import monitoring  # pylint: disable=import-outside-toplevel
    monitoring.register_event_duration_secs_listener(self._on_event)

  def _on_event(self, event: str, duration: float, **_) -> None:
    if event == COMPILE_EVENT:
      row = self.stats[self.current]
      row[0] += 1
      row[1] += duration

  def pytest_runtest_protocol(self, item, nextitem):  # pylint: disable=unused-argument
    self.current, self._start = item.nodeid, time.perf_counter()

  def pytest_runtest_logfinish(self, nodeid, location):  # pylint: disable=unused-argument
    self.stats[nodeid][2] += time.perf_counter() - self._start


def report(stats: dict[str, list[float]], top: int) -> str:
  rows = sorted(stats.items(), key=lambda kv: -kv[1][1])
  n, seconds, wall = (sum(r[i] for r in stats.values()) for i in range(3))
  lines = [f'{int(n)} compiles, {seconds:.1f} s of compile in {wall:.1f} s of test time '
           f'({len(stats)} tests)', '', f'{"compile s":>9} {"count":>6} {"test s":>7}  by compile '
           'seconds']
  lines += [f'{c:9.1f} {int(k):6d} {w:7.1f}  {name}' for name, (k, c, w) in rows[:top]]
  lines += ['', f'{"compile s":>9} {"count":>6} {"test s":>7}  by number of compiles']
  rows = sorted(stats.items(), key=lambda kv: -kv[1][0])
  lines += [f'{c:9.1f} {int(k):6d} {w:7.1f}  {name}' for name, (k, c, w) in rows[:top]]
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--top', type=int, default=25, help='rows per table')
  parser.add_argument('--json', help='also write {test id: [compiles, compile s, test s]} here')
  args, pytest_args = parser.parse_known_args(argv)
  if not pytest_args:
    parser.error('name the tests to run (pytest arguments), e.g. tests/losses')
  import pytest  # pylint: disable=import-outside-toplevel
  counter = CompileCounter()
  code = pytest.main(['-q', '-p', 'no:cacheprovider', *pytest_args], plugins=[counter])
  print()
  print(report(counter.stats, args.top))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(counter.stats, f, indent=1)
  return int(code)


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
  sys.exit(main())
