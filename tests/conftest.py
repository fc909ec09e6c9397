"""Test setup: 8 simulated CPU devices (set before JAX initialises its backend) and one persistent
compilation cache for the whole session, shared with the child processes of the training tests
(tests/training/helpers.subprocess_env), so each distinct program compiles once per run."""
import os
import tempfile

_flag = '--xla_force_host_platform_device_count=8'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# .ci/run points this at the user's cache; otherwise a fresh folder (cold) for this session.
if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='ecgan_jax_test_cache_')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # noqa: E402  (after XLA_FLAGS and the cache settings)

jax.config.update('jax_threefry_partitionable', True)
