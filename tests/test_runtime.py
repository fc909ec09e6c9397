"""Process-wide runtime settings: the default XLA flags and when they apply; where the persistent
compilation cache goes and when it is off; run-once programs compile without LLVM optimisation and
give the same values; the executable cache loads a saved program without tracing it, keyed on what
decides the program."""
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

from ecgan_jax import _runtime

_MEASURED_JAXLIB = jaxlib.__version__.startswith(_runtime._DEFAULT_XLA_FLAGS_JAXLIB)
_YNN = '--xla_cpu_experimental_ynn_fusion_type'


def test_default_xla_flags_are_added_unless_the_user_names_them():
  count = '--xla_force_host_platform_device_count=2'
  if not _MEASURED_JAXLIB:  # an unmeasured jaxlib may not know the flag: nothing is added
    assert _runtime.with_default_xla_flags(count) == count
    return
  assert _runtime.with_default_xla_flags('') == f'{_YNN}='
  assert _runtime.with_default_xla_flags(f' {count} ') == f'{count} {_YNN}='
  mine = f'{_YNN}=+individual_dot {count}'  # XLA's own YNNPACK default, kept as given
  assert _runtime.with_default_xla_flags(mine) == mine


# A matmul chain: XLA:CPU compiles its dots into YNNPACK fusions unless told otherwise.
_DOT_PROGRAM = """
import jax, jax.numpy as jnp
from ecgan_jax import _runtime
_runtime.use_default_xla_flags()
x = jnp.ones((64, 128))
text = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x).lower(x).compile().as_text()
print('YNN' if '__ynn_fusion' in text else 'NO_YNN')
"""


@pytest.mark.parametrize('user_flags,expected',
                         [('', 'NO_YNN'), (f'{_YNN}=+individual_dot', 'YNN')])
def test_use_default_xla_flags_compiles_without_ynnpack_fusions_unless_asked(user_flags, expected):
  env = dict(os.environ, XLA_FLAGS=user_flags, JAX_PLATFORMS='cpu',
             PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, '-c', _DOT_PROGRAM], env=env, capture_output=True,
                       text=True, timeout=300, check=True).stdout.split()
  assert out[-1] == (expected if _MEASURED_JAXLIB else 'YNN')


def test_use_default_xla_flags_leaves_the_environment_once_the_backend_exists(monkeypatch, caplog):
  jax.devices()  # the test session's backend exists
  monkeypatch.setenv('XLA_FLAGS', '')
  _runtime.use_default_xla_flags()
  assert os.environ['XLA_FLAGS'] == ''
  if _MEASURED_JAXLIB:
    assert 'already created its backend' in caplog.text


def test_cache_dir_default_env_and_xdg(monkeypatch, tmp_path):
  monkeypatch.delenv(_runtime.CACHE_ENV, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert _runtime.default_cache_dir() == str(tmp_path / 'xdg' / 'ecgan_jax' / 'jax_cache')
  monkeypatch.setenv(_runtime.CACHE_ENV, str(tmp_path / 'env'))
  assert _runtime.default_cache_dir() == str(tmp_path / 'env')


def test_enable_compilation_cache_sets_jax_config_or_stays_off(monkeypatch, tmp_path):
  updates = {}
  monkeypatch.setattr(jax.config, 'update', lambda k, v: updates.__setitem__(k, v))
  monkeypatch.delenv(_runtime.MIN_COMPILE_TIME_ENV, raising=False)
  assert _runtime.enable_compilation_cache('none') is None
  assert _runtime.enable_compilation_cache('') is None
  assert updates == {}
  path = str(tmp_path / 'cache')
  assert _runtime.enable_compilation_cache(path) == path
  assert updates['jax_compilation_cache_dir'] == path
  assert updates['jax_persistent_cache_min_compile_time_secs'] == (
      _runtime.DEFAULT_MIN_COMPILE_TIME_SECS)
  monkeypatch.setenv(_runtime.MIN_COMPILE_TIME_ENV, '0')  # the user's setting is kept
  updates.clear()
  _runtime.enable_compilation_cache(path)
  assert 'jax_persistent_cache_min_compile_time_secs' not in updates


def test_run_once_jit_gives_the_values_of_plain_jit():
  def init(key):
    k1, k2 = jax.random.split(key)
    return {'w': jax.random.normal(k1, (17, 5)) * 0.02,
            'u': jax.random.truncated_normal(k2, -2.0, 2.0, (33,)), 'b': jnp.zeros(5)}
  key = jax.random.PRNGKey(3)
  a, b = _runtime.jit_run_once(init)(key), jax.jit(init)(key)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):  # equal up to float32 rounding
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def _new_constant() -> np.float32:
  """A constant no earlier run put into JAX's persistent compilation cache, so a program holding it
  compiles afresh (only fresh compiles are saved in the executable cache)."""
  return np.float32(np.random.default_rng().uniform(2.0, 3.0))


def _traced_counter(c: np.float32):
  """(f, list of trace events): f(x, y) = x * c + y appends to the list when traced."""
  traces = []

  def f(x, y):
    traces.append(x.shape)
    return {'z': x * c + y}
  return f, traces


def test_executable_cache_loads_a_saved_program_without_tracing(tmp_path):
  x, y = np.arange(6, dtype=np.float32).reshape(2, 3), np.float32(1.0)
  c = _new_constant()
  f, traces = _traced_counter(c)
  first = _runtime.ExecutableCache(str(tmp_path)).compile('prog', f, (x, y), 'config-A')
  assert len(traces) == 1 and len(list(tmp_path.glob('prog-*.exe'))) == 1
  g, traces_again = _traced_counter(c)  # a new launch: a new function object, nothing traced yet
  loaded = _runtime.ExecutableCache(str(tmp_path)).compile('prog', g, (x, y), 'config-A')
  assert traces_again == []  # came from disk
  np.testing.assert_array_equal(np.asarray(loaded(x, y)['z']), np.asarray(first(x, y)['z']))
  np.testing.assert_allclose(np.asarray(loaded(x, y)['z']), x * c + 1, rtol=1e-6)


def test_executable_cache_key_covers_the_key_string_and_argument_shapes(tmp_path):
  cache = _runtime.ExecutableCache(str(tmp_path))
  x, y = np.ones((2, 3), np.float32), np.float32(1.0)
  cases = [((x, y), 'config-A'), ((x, y), 'config-B'),             # another config
           ((np.ones((4, 3), np.float32), y), 'config-A'),         # another shape
           ((x.astype(np.float16), y), 'config-A')]                 # another dtype
  for args, key in cases:
    f, traces = _traced_counter(_new_constant())  # traced unless (wrongly) loaded from the cache
    cache.compile('prog', f, args, key)
    assert len(traces) == 1, (args, key)
  assert len(list(tmp_path.glob('prog-*.exe'))) == 4  # four keys, four entries


def test_executable_cache_recompiles_over_a_corrupt_entry(tmp_path, caplog):
  x, y = np.ones((2, 3), np.float32), np.float32(1.0)
  c = _new_constant()
  f, _ = _traced_counter(c)
  cache = _runtime.ExecutableCache(str(tmp_path))
  cache.compile('prog', f, (x, y), 'k')
  (entry,) = tmp_path.glob('prog-*.exe')
  entry.write_bytes(b'not a pickle')
  g, traces_again = _traced_counter(c)
  with caplog.at_level('WARNING'):
    out = cache.compile('prog', g, (x, y), 'k')(x, y)
  assert 'Ignoring the cached executable' in caplog.text and len(traces_again) == 1
  np.testing.assert_allclose(np.asarray(out['z']), x * c + 1, rtol=1e-6)


def test_executable_cache_keeps_pmap_donation_and_collectives(tmp_path):
  n, c = jax.local_device_count(), _new_constant()
  step = lambda s, b: (jax.tree.map(lambda w: w - c * jax.lax.pmean(b.mean(), 'i'), s), b.sum())
  state = jax.pmap(lambda s: s, axis_name='i')({'w': np.ones((n, 3), np.float32)})
  batch = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
  args = (state, batch)
  cache = _runtime.ExecutableCache(str(tmp_path))
  wrap = functools.partial(jax.pmap, axis_name='i', donate_argnums=(0,))
  cache.compile('step', step, args, 'k', wrap=wrap)
  loaded = _runtime.ExecutableCache(str(tmp_path)).compile('step', step, args, 'k', wrap=wrap)
  new_state, sums = loaded(state, batch)
  assert len(list(tmp_path.glob('step-*.exe'))) == 1
  np.testing.assert_allclose(np.asarray(new_state['w']), 1.0 - c * batch.mean(), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(sums), batch.sum(axis=1))
  assert state['w'].is_deleted()  # the state argument was donated


def test_in_background_returns_the_result_or_raises_the_error_of_its_thread():
  assert _runtime.in_background(lambda a, b: a + b, 2, 3, name='add').result(timeout=60) == 5

  def fail():
    raise ValueError('from the thread')
  with pytest.raises(ValueError, match='from the thread'):
    _runtime.in_background(fail, name='fail').result(timeout=60)


def test_executable_cache_prunes_all_but_the_newest_entries_per_name(tmp_path):
  cache = _runtime.ExecutableCache(str(tmp_path))
  f, _ = _traced_counter(_new_constant())
  y = np.float32(1.0)
  kept = _runtime._KEPT_PER_NAME  # pylint: disable=protected-access
  for i in range(kept + 2):
    cache.compile('prog', f, (np.ones((i + 1,), np.float32), y), 'k')
  assert len(list(tmp_path.glob('prog-*.exe'))) == kept


def test_executable_cache_sits_beside_the_compilation_cache_and_is_off_with_it(tmp_path):
  assert _runtime.executable_cache('') is None
  assert _runtime.executable_cache(str(tmp_path)).directory == str(
      tmp_path / _runtime.EXECUTABLES_SUBDIR)
  # Default: the folder of JAX's compilation cache in this process (tests/conftest.py sets one).
  assert _runtime.executable_cache().directory == os.path.join(
      jax.config.values['jax_compilation_cache_dir'], _runtime.EXECUTABLES_SUBDIR)


def test_executable_cache_never_saves_a_program_loaded_from_jax_compilation_cache(tmp_path,
                                                                                  caplog):
  """XLA:CPU cannot serialize an executable it loaded from JAX's persistent compilation cache again
  (the copy fails at run time: "Function ... not found"), so such a program is used, not saved."""
  def make_init():  # a new function object per launch, as in a new process
    def init(key):
      a = jax.random.normal(key, (64, 33))
      return {'a': a[:, 1:17].reshape(32, 32) @ a[:32, :32], 'b': jnp.tanh(a[3:40]).sum(0)}
    return init
  key = jax.random.PRNGKey(0)
  want = _runtime.jit_run_once(make_init())(key)  # now in JAX's persistent cache (conftest.py)
  with caplog.at_level('INFO', logger='ecgan_jax._runtime'):
    got = _runtime.ExecutableCache(str(tmp_path)).compile('init', make_init(), (key,), 'k',
                                                          wrap=_runtime.jit_run_once)(key)
  assert 'loaded from JAX\'s compilation cache' in caplog.text
  assert not list(tmp_path.glob('*.exe'))
  for name in want:
    np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]))


def test_executable_cache_keeps_shapes_so_a_later_launch_does_not_trace(tmp_path):
  calls = []

  def make_create():  # a new function object per launch (JAX caches traces per function)
    def create(key):
      calls.append(1)
      return {'w': jnp.zeros((3, 4), jnp.bfloat16), 'step': 0, 'k': jax.random.split(key)}
    return create
  key = jax.random.PRNGKey(0)
  first = _runtime.ExecutableCache(str(tmp_path)).eval_shape('init', make_create(), (key,), 'k')
  again = _runtime.ExecutableCache(str(tmp_path)).eval_shape('init', make_create(), (key,), 'k')
  assert len(calls) == 1 and len(list(tmp_path.glob('init-*.shapes'))) == 1
  want = jax.eval_shape(make_create(), key)
  for got in (first, again):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(got)] == [
        (x.shape, x.dtype) for x in jax.tree.leaves(want)]
  _runtime.ExecutableCache(str(tmp_path)).eval_shape('init', make_create(), (key,), 'config B')
  assert len(calls) == 3  # traced again: the key string is part of the entry's name
