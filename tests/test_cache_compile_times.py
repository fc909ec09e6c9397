"""benchmarks/cache_compile_times.py: compile seconds per program name, read back from a JAX
persistent compilation cache folder (entries written here in JAX's own format, and one from a
real compile)."""
import os
import sys

import jax
import jax.numpy as jnp
from jax._src import compilation_cache
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import cache_compile_times  # noqa: E402  (benchmarks/cache_compile_times.py)


def _write_entry(folder, name, seconds):
  entry = compilation_cache.combine_executable_and_time(b'not an executable', seconds)
  with open(os.path.join(folder, name), 'wb') as f:
    f.write(compilation_cache.compress_executable(entry))


def test_compile_seconds_are_summed_per_program_name(tmp_path, capsys):
  _write_entry(tmp_path, 'jit__fun-' + 'a' * 64 + '-cache', 114)
  _write_entry(tmp_path, 'jit__fun-' + 'b' * 64 + '-cache', 52)
  _write_entry(tmp_path, 'jit_add-' + 'c' * 64 + '-cache', 0)
  (tmp_path / ('jit_add-' + 'c' * 64 + '-atime')).write_bytes(b'123')  # JAX's access times
  (tmp_path / 'ecgan_executables').mkdir()  # our own executable cache: not JAX's entries
  assert cache_compile_times.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert '3 entries, 166 s of compile' in out and '1 entries under 1 s' in out
  rows = [line.split() for line in out.splitlines()]
  assert ['166', '2', 'jit__fun'] in rows and ['0', '1', 'jit_add'] in rows
  assert rows.index(['166', '2', 'jit__fun']) < rows.index(['0', '1', 'jit_add'])


def test_a_real_cache_entry_is_read(tmp_path):
  """An entry JAX itself wrote (the test session's cache, conftest.py) parses."""
  folder = jax.config.jax_compilation_cache_dir
  if not folder or not os.path.isdir(folder):
    pytest.fail('the test session runs with a persistent compilation cache (tests/conftest.py)')
  jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.25)(jnp.arange(7.0)).block_until_ready()
  entries = cache_compile_times.read_entries(folder)
  assert entries and all(seconds >= 0 and size > 0 for _, seconds, size in entries)
  assert any(cache_compile_times.program_name(name) == 'jit__lambda' for name, _, _ in entries)


def test_a_folder_without_entries_is_an_error(tmp_path, capsys):
  assert cache_compile_times.main([str(tmp_path)]) == 2
  assert 'no JAX cache entries' in capsys.readouterr().err
  assert cache_compile_times.main([str(tmp_path / 'missing')]) == 2
