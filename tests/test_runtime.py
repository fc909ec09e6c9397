"""Process-wide runtime settings: where the persistent compilation cache goes and when it is off;
run-once programs compile without LLVM optimisation and give the same values."""
import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import _runtime


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
