"""Multi-scale discriminator and VAE style encoder: shapes (PyTorch conv arithmetic), scale
pyramid, edge inputs, spectral-norm state, gradients."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from ecgan_jax import _runtime
from ecgan_jax import configuration as C
from ecgan_jax.models import build_discriminator, build_style_encoder, one_hot_semantics
from ecgan_jax.models.discriminator import NLayerDiscriminator
from ecgan_jax.models.layers import avg_pool_exclude_pad
from ecgan_jax.models.style_encoder import encoder_layers

KEY = jax.random.PRNGKey(0)


def torch_out(size, k=4, s=2, p=2):
  return (size + 2 * p - k) // s + 1


def expected_shapes(h, w, n_layers, ndf, b):
  shapes, nf = [], ndf
  h, w = torch_out(h), torch_out(w)
  shapes.append((b, h, w, nf))
  for n in range(1, n_layers):
    nf = min(nf * 2, 512)
    s = 1 if n == n_layers - 1 else 2
    h, w = torch_out(h, s=s), torch_out(w, s=s)
    shapes.append((b, h, w, nf))
  shapes.append((b, torch_out(h, s=1), torch_out(w, s=1), 1))
  return shapes


def tiny_setup():
  cfg = synthetic.get_config('tiny')
  cfg.dataset.crop_size = cfg.dataset.load_size = 32
  h, w = C.image_size(cfg)
  label = jax.random.randint(KEY, (2, h, w), 0, C.num_classes(cfg))
  sem = one_hot_semantics(label, C.num_classes(cfg))
  image = jnp.tanh(jax.random.normal(jax.random.PRNGKey(1), (2, h, w, 3)))
  return cfg, sem, image


@pytest.fixture(scope='module')
def tiny_d():
  cfg, sem, image = tiny_setup()
  d = build_discriminator(cfg)
  v = _runtime.jit_run_once(lambda s, i: d.init(KEY, s, i, train=False))(sem, image)

  def loss(params, sem, image, train):
    outs, state = d.apply({**v, 'params': params}, sem, image, train=train,
                          mutable=['batch_stats'])
    return sum(jnp.sum(jnp.sin(f)) for scale in outs for f in scale), (outs, state)

  run = jax.jit(jax.grad(loss, has_aux=True), static_argnums=3)
  return dict(cfg=cfg, d=d, sem=sem, image=image, v=v, run=run)


def test_output_shapes_follow_pytorch_conv_arithmetic():
  for h, w, n_layers, ndf in ((256, 256, 4, 64), (256, 512, 4, 64), (32, 32, 3, 8)):
    cfg = synthetic.get_config()
    cfg.model.n_layers_D, cfg.model.ndf = n_layers, ndf
    d = build_discriminator(cfg)
    sem = jax.ShapeDtypeStruct((2, h, w, 7), jnp.float32)
    img = jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32)
    v = jax.eval_shape(lambda s, i: d.init(KEY, s, i, train=False), sem, img)
    outs = jax.eval_shape(lambda v, s, i: d.apply(v, s, i, train=False), v, sem, img)
    assert len(outs) == cfg.model.num_D == 2
    for i, scale in enumerate(outs):
      hi, wi = -(-h // 2 ** i), -(-w // 2 ** i)  # avg-pool (3, 2, 1) halves, rounding up
      assert [f.shape for f in scale] == expected_shapes(hi, wi, n_layers, ndf, 2)


def test_second_scale_sees_the_average_pooled_input(tiny_d):
  d, v, sem, image = tiny_d['d'], tiny_d['v'], tiny_d['sem'], tiny_d['image']
  (_, (outs, _)) = tiny_d['run'](v['params'], sem, image, False)
  x = avg_pool_exclude_pad(jnp.concatenate([sem, image], -1))
  # the same layers as D's second scale (the pooled label map convolved as a data block)
  single = NLayerDiscriminator(d.ndf, d.n_layers, d.spectral_norm, stopped=(0, sem.shape[-1]))
  sub = {'params': v['params']['discriminator_1'],
         'batch_stats': v['batch_stats']['discriminator_1']}
  ref = jax.jit(lambda sub, x: single.apply(sub, x, False))(sub, x)
  for a, b in zip(outs[1], ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_channel_edge_input_is_broadcast_to_three(tiny_d):
  d, v, sem = tiny_d['d'], tiny_d['v'], tiny_d['sem']
  edge = jnp.where(jax.random.uniform(KEY, sem.shape[:3] + (1,)) > 0.8, 1.0, -1.0)
  apply = jax.jit(lambda e: d.apply(v, sem, e, train=False))
  for a, b in zip(jax.tree.leaves(apply(edge)), jax.tree.leaves(apply(jnp.tile(edge, 3)))):
    np.testing.assert_array_equal(a, b)


def test_spectral_norm_state_updates_in_training_only_and_gradients_reach_all(tiny_d):
  v, run, sem, image = tiny_d['v'], tiny_d['run'], tiny_d['sem'], tiny_d['image']
  before = flax.traverse_util.flatten_dict(v['batch_stats'], sep='/')
  grads, (_, state) = run(v['params'], sem, image, False)
  after_eval = flax.traverse_util.flatten_dict(state['batch_stats'], sep='/')
  for k in before:
    np.testing.assert_array_equal(before[k], after_eval[k], err_msg=k)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.max(jnp.abs(g))) > 0, jax.tree_util.keystr(path)
  grads, (_, state) = run(v['params'], sem, image, True)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.max(jnp.abs(g))) > 0, jax.tree_util.keystr(path)
  after = flax.traverse_util.flatten_dict(state['batch_stats'], sep='/')
  _, (_, scaled) = run(jax.tree.map(lambda p: 1.5 * p, v['params']), sem, image, True)
  scaled = flax.traverse_util.flatten_dict(scaled['batch_stats'], sep='/')
  sigmas = [k for k in before if k.endswith('/sigma')]
  assert len(sigmas) == tiny_d['cfg'].model.num_D * (tiny_d['cfg'].model.n_layers_D - 1)
  for k in sigmas:  # the stored estimate follows the weights in training
    np.testing.assert_allclose(scaled[k], 1.5 * after[k], rtol=1e-4, err_msg=k)


def test_style_encoder_matches_spade_layout_and_handles_non_square_images():
  cfg = synthetic.get_config()
  cfg.model.ngf, cfg.model.z_dim = 64, 256
  e = build_style_encoder(cfg)
  img = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
  v = jax.eval_shape(lambda i: e.init(KEY, i, train=False), img)
  widths = [v['params'][f'layer{i}']['kernel'].shape[-1] for i in range(1, 7)]
  assert widths == [64, 128, 256, 512, 512, 512] and encoder_layers(256) == 6
  assert v['params']['fc_mu']['kernel'].shape == (4 * 4 * 512, 256)
  # Cityscapes-shaped input is resized to a square first, as SPADE does.
  wide = jax.ShapeDtypeStruct((2, 256, 512, 3), jnp.float32)
  mu, logvar = jax.eval_shape(lambda v, i: e.apply(v, i, train=False), v, wide)
  assert mu.shape == logvar.shape == (2, 256)


def test_style_encoder_gradients_and_deterministic_outputs():
  cfg, _, image = tiny_setup()
  e = build_style_encoder(cfg)
  v = _runtime.jit_run_once(lambda i: e.init(KEY, i, train=False))(image)

  def loss(params, image):
    (mu, logvar), _ = e.apply({**v, 'params': params}, image, train=True,
                              mutable=['batch_stats'])
    return jnp.sum(jnp.sin(mu)) + jnp.sum(jnp.cos(logvar)), (mu, logvar)

  grads, (mu, logvar) = jax.jit(jax.grad(loss, has_aux=True))(v['params'], image)
  assert mu.shape == logvar.shape == (2, cfg.model.z_dim)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.max(jnp.abs(g))) > 0, jax.tree_util.keystr(path)
  _, (mu2, _) = jax.jit(jax.grad(loss, has_aux=True))(v['params'], image)
  np.testing.assert_array_equal(mu, mu2)
  # Different images give different codes (the encoder reads its input).
  _, (mu3, _) = jax.jit(jax.grad(loss, has_aux=True))(v['params'], -image)
  assert float(jnp.max(jnp.abs(mu - mu3))) > 0
