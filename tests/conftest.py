"""Test setup: 8 simulated CPU devices and the commands' default XLA flags (set before JAX
initialises its backend), and one persistent compilation cache for the whole session, shared with
the child processes of the training tests (tests/training/helpers.subprocess_env), so each
distinct program compiles once per run."""
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

# The flags every command adds (ecgan_jax/_runtime.py): the tests compile the programs users get,
# and share them with child processes (tests/training/helpers.subprocess_env adds the same). This
# imports jax: after the cache settings, which jax reads at import; before its backend exists.
from ecgan_jax import _runtime  # noqa: E402

_runtime.use_default_xla_flags()

import jax  # noqa: E402  (after XLA_FLAGS and the cache settings)

jax.config.update('jax_threefry_partitionable', True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _he_normal(rng: np.random.Generator, x):
  """Kernels -> He-normal draws; other leaves (biases, norms' affine) unchanged."""
  x = np.asarray(x)
  if x.ndim < 2:
    return x
  return (rng.standard_normal(x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1]))).astype(x.dtype)


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory):
  """(workdir, config) of ONE tiny synthetic checkpoint shared by the inference, synthesis, demo and
  notebook tests: 32x32, multimodal='vae', saved with the trainer's Checkpointer at step 0.

  A freshly initialised generator outputs ~0 (flat grey) until trained, which would make "the image
  is not blank" untestable without minutes of training. So the test makes its own weights:
  He-normal kernels, then 20 train-mode passes over synthetic scenes set the BatchNorm running
  statistics and spectral-norm estimates that inference uses; EMA = these weights.
  """
  import jax  # pylint: disable=import-outside-toplevel
  # pylint: disable=import-outside-toplevel
  from ecgan_jax.data import synthetic
  from ecgan_jax.models import generate
  from ecgan_jax.training import checkpointing, setup
  from configs import synthetic as synthetic_config  # pylint: disable=import-outside-toplevel
  config = synthetic_config.get_config('tiny')
  config.dataset.crop_size = config.dataset.load_size = 32
  config.dataset.synthetic_size = 64
  config.model.multimodal = 'vae'
  workdir = tmp_path_factory.mktemp('tiny_run')
  run = setup.build(config)
  state = run.initial_state()
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: _he_normal(rng, x), state.g_params)
  scenes = [synthetic.render_scene(rng, 32, 32) for _ in range(8)]
  label = np.stack([s['label'] for s in scenes]).astype(np.int32)
  image = np.stack([s['image'] for s in scenes]).astype(np.float32) / 127.5 - 1.0

  @jax.jit
  def calibrate(g_state):
    return generate.generate(run.init_models, params, g_state, label, key=jax.random.PRNGKey(0),
                             train=True, style_image=image)[1]

  g_state = state.g_state
  for _ in range(20):
    g_state = calibrate(g_state)
  state = state.replace(g_params=params, ema_params=params, g_state=checkpointing.to_host(g_state))
  with checkpointing.Checkpointer(workdir / 'checkpoints', async_checkpointing=False) as ckpt:
    ckpt.save(0, state, config=config)
  return str(workdir), config
