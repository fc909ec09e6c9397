"""The networks under jax.pmap on 8 simulated CPU devices: synced batch norm keeps every replica
identical and equal to one device seeing the whole batch."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from ecgan_jax import _runtime
from ecgan_jax import configuration as C
from ecgan_jax.models import (build_discriminator, build_generator, build_style_encoder,
                              one_hot_semantics)

N_DEV = 8


def setup_batch(cfg):
  """Global batch of 8 different layouts (one per device) and images."""
  h, w = C.image_size(cfg)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  blocks = jax.random.randint(keys[0], (N_DEV, h // 8, w // 8), 0, C.num_classes(cfg))
  label = jnp.repeat(jnp.repeat(blocks, 8, axis=1), 8, axis=2)
  sem = one_hot_semantics(label, C.num_classes(cfg))
  image = jnp.tanh(jax.random.normal(keys[1], (N_DEV, h, w, 3)))
  return sem, image


def shard(x):
  return x.reshape(N_DEV, x.shape[0] // N_DEV, *x.shape[1:])


def flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep='/')


def assert_replicas_identical(stacked):
  for k, a in flat(stacked).items():
    for r in range(1, N_DEV):
      np.testing.assert_array_equal(a[r], a[0], err_msg=f'{k} differs on replica {r}')


@pytest.fixture(scope='module')
def cfg():
  assert jax.local_device_count() == N_DEV, 'tests/conftest.py forces 8 CPU devices'
  c = synthetic.get_config('tiny')
  c.dataset.crop_size = c.dataset.load_size = 32
  return c


def test_generator_synced_batch_norm_matches_one_device_with_the_whole_batch(cfg):
  sem, _ = setup_batch(cfg)
  g_single, g_pmap = build_generator(cfg), build_generator(cfg, axis_name='batch')
  # Compiled without LLVM optimisation, as the trainer's init (it runs once).
  v = _runtime.jit_run_once(
      lambda s: g_single.init({'params': jax.random.PRNGKey(1)}, s, train=False))(sem)

  def apply(model, v, s):
    return model.apply(v, s, train=True, mutable=['batch_stats'])

  out_p, state_p = jax.pmap(lambda v, s: apply(g_pmap, v, s), axis_name='batch',
                            in_axes=(None, 0))(v, shard(sem))
  out_1, state_1 = jax.jit(lambda v, s: apply(g_single, v, s))(v, sem)
  # Every replica holds the same batch statistics and spectral-norm vectors...
  assert_replicas_identical(state_p['batch_stats'])
  # ... equal to those of one device that saw all 8 layouts.
  single = flat(state_1['batch_stats'])
  bn = [k for k in single if k.endswith(('/mean', '/var'))]
  assert len(bn) > 20
  for k, a in flat(state_p['batch_stats']).items():
    np.testing.assert_allclose(a[0], single[k], rtol=2e-5, atol=1e-6, err_msg=k)
  # Normalising with the global statistics gives every example the output it gets in the
  # single-device batch (errors relative to each output's scale: at SPADE's init, xavier gain
  # 0.02, the images are still ~1e-6 while the L2-normalised embeddings are O(1)).
  def rel_err(a, b):
    return float(jnp.max(jnp.abs(a.reshape(b.shape) - b)) / jnp.max(jnp.abs(b)))

  keys = ('image', 'coarse_image', 'edge', 'class_image')
  for key in keys:
    assert rel_err(out_p[key], out_1[key]) < 1e-3, key
  for s, emb in out_1['embeddings'].items():
    assert rel_err(out_p['embeddings'][s], emb) < 1e-4, s
  # Without the axis name each device would normalise by its own example: visibly different.
  out_local, _ = jax.pmap(lambda v, s: apply(g_single, v, s), in_axes=(None, 0))(v, shard(sem))
  for key in keys:
    assert rel_err(out_local[key], out_1[key]) > 0.05, key
  assert rel_err(out_local['embeddings']['s1'], out_1['embeddings']['s1']) > 0.05


def test_discriminator_and_style_encoder_replicas_stay_identical(cfg):
  sem, image = setup_batch(cfg)
  d, e = build_discriminator(cfg, axis_name='batch'), build_style_encoder(cfg, axis_name='batch')
  vd = _runtime.jit_run_once(
      lambda s, i: d.init(jax.random.PRNGKey(2), s, i, train=False))(sem, image)
  ve = _runtime.jit_run_once(lambda i: e.init(jax.random.PRNGKey(3), i, train=False))(image)

  def step(vd, ve, s, i):
    outs, sd = d.apply(vd, s, i, train=True, mutable=['batch_stats'])
    (mu, logvar), se = e.apply(ve, i, train=True, mutable=['batch_stats'])
    return outs, mu, sd, se

  outs_p, mu_p, sd_p, se_p = jax.pmap(step, axis_name='batch', in_axes=(None, None, 0, 0))(
      vd, ve, shard(sem), shard(image))
  assert_replicas_identical(sd_p['batch_stats'])
  assert_replicas_identical(se_p['batch_stats'])
  outs_1, mu_1, sd_1, _ = jax.jit(step)(vd, ve, sem, image)
  for a, b in zip(jax.tree.leaves(outs_p), jax.tree.leaves(outs_1)):
    np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(mu_p.reshape(mu_1.shape), mu_1, rtol=1e-4, atol=1e-6)
  for k, a in flat(sd_p['batch_stats']).items():
    np.testing.assert_allclose(a[0], flat(sd_1['batch_stats'])[k], rtol=1e-5, err_msg=k)
