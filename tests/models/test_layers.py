"""Layers: PyTorch-compatible resizing/pooling/padding, spectral norm, SPADE, the SPADE ResBlock,
spectral-norm placement per mode, remat and bfloat16 compute."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from configs import synthetic
from ecgan_jax import configuration as C
from ecgan_jax.models import layers
from ecgan_jax.models import (build_discriminator, build_generator, build_style_encoder,
                              one_hot_semantics)
from ecgan_jax.models.layers import (SPADE, Conv, ParamFreeNorm, SPADEResBlock,
                                     SpectralNormalizer, avg_pool_exclude_pad, resblock_class)
from ecgan_jax.models.semantics import resize_nearest

KEY = jax.random.PRNGKey(0)


def nchw(x):
  return torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)


def nhwc(t):
  return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize('size_in,size_out', [((8, 8), (4, 4)), ((8, 12), (3, 5)),
                                              ((5, 4), (8, 8)), ((6, 6), (6, 6))])
def test_resize_nearest_matches_torch_interpolate(size_in, size_out):
  x = np.random.RandomState(0).randn(2, *size_in, 3).astype(np.float32)
  ref = nhwc(F.interpolate(nchw(x), size=size_out, mode='nearest'))
  np.testing.assert_array_equal(resize_nearest(jnp.asarray(x), size_out), ref)


def test_resize_nearest_keeps_label_ids_exact_by_striding():
  label = jnp.arange(64).reshape(1, 8, 8)
  np.testing.assert_array_equal(resize_nearest(label, (2, 2)), label[:, ::4, ::4])


@pytest.mark.parametrize('hw', [(8, 8), (7, 10)])
def test_avg_pool_excludes_padding_like_torch(hw):
  x = np.random.RandomState(1).randn(2, *hw, 4).astype(np.float32)
  ref = nhwc(F.avg_pool2d(nchw(x), 3, stride=2, padding=1, count_include_pad=False))
  np.testing.assert_allclose(avg_pool_exclude_pad(jnp.asarray(x)), ref, rtol=1e-6, atol=1e-6)


def test_conv_matches_torch_conv2d_with_padding_and_stride():
  x = np.random.RandomState(2).randn(2, 9, 11, 3).astype(np.float32)
  conv = Conv(5, 4, strides=2, padding=2)
  v = conv.init(KEY, jnp.asarray(x))
  w = np.array(v['params']['kernel'])  # [kh, kw, in, out]
  ref = F.conv2d(nchw(x), torch.from_numpy(w).permute(3, 2, 0, 1),
                 torch.from_numpy(np.array(v['params']['bias'])), stride=2, padding=2)
  np.testing.assert_allclose(conv.apply(v, jnp.asarray(x)), nhwc(ref), rtol=1e-5, atol=1e-6)


def test_one_hot_semantics_appends_the_instance_channel():
  label = jnp.array([[[0, 2], [1, 2]]])
  inst = jnp.array([[[[1.], [0.]], [[0.], [1.]]]])
  sem = one_hot_semantics(label, 3, inst)
  assert sem.shape == (1, 2, 2, 4) and sem.dtype == jnp.float32
  np.testing.assert_array_equal(sem[0, 0, 1], [0, 0, 1, 0])
  np.testing.assert_array_equal(sem[..., 3], inst[..., 0])


def test_spectral_norm_power_iteration_converges_and_eval_leaves_it():
  x = jnp.ones((1, 4, 4, 6))
  conv = Conv(8, 3, spectral=True)
  v = conv.init(KEY, x)
  kernel = np.asarray(v['params']['kernel'])
  top = np.linalg.svd(kernel.reshape(-1, 8), compute_uv=False)[0]
  # Start from a fresh random u, v; each training call runs one power-iteration step.
  state = jax.tree.map(lambda a: a, v['batch_stats'])
  rng = np.random.RandomState(3)
  state['sn']['u'] = jnp.asarray(rng.randn(8) / np.sqrt(8), jnp.float32)
  state['sn']['v'] = jnp.asarray(rng.randn(54) / np.sqrt(54), jnp.float32)
  step = jax.jit(lambda s: conv.apply({'params': v['params'], 'batch_stats': s}, x, True,
                                      mutable=['batch_stats'])[1]['batch_stats'])
  for _ in range(30):
    state = step(state)
  np.testing.assert_allclose(state['sn']['sigma'], top, rtol=1e-3)
  # The normalised kernel has spectral norm 1: output equals conv with kernel / sigma.
  y, same = conv.apply({'params': v['params'], 'batch_stats': state}, x, False,
                       mutable=['batch_stats'])
  plain = Conv(8, 3).apply({'params': {'kernel': kernel / float(state['sn']['sigma']),
                                       'bias': v['params']['bias']}}, x)
  np.testing.assert_allclose(y, plain, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(same['batch_stats']), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)  # evaluation does not touch u, v, sigma
  # The raw kernel keeps SPADE's small init scale (xavier gain 0.02): only its use is normalised.
  assert top < 0.1


def test_spectral_norm_gradient_flows_through_sigma():
  w = jax.random.normal(KEY, (3, 3, 4, 5))
  sn = SpectralNormalizer()
  state = sn.init(KEY, w, False)

  def f(w):
    return jnp.sum(sn.apply(state, w, False) ** 2)

  g = jax.grad(f)(w)
  # ||W / sigma||_F^2 is invariant to scaling W, so its gradient is orthogonal to W.
  assert abs(float(jnp.sum(g * w))) < 1e-4 * float(jnp.linalg.norm(g) * jnp.linalg.norm(w))
  assert float(jnp.linalg.norm(g)) > 0


def test_spade_without_modulation_is_the_param_free_norm():
  rng = np.random.RandomState(4)
  x = jnp.asarray(rng.randn(4, 8, 8, 6) * 3 + 1, jnp.float32)
  seg = one_hot_semantics(jnp.asarray(rng.randint(0, 5, (4, 16, 16))), 5)
  for kind, axes in (('batch', (0, 1, 2)), ('instance', (1, 2))):
    spade = SPADE(hidden=8, param_free_norm=kind)
    v = spade.init(KEY, x, seg, False)
    zeroed = flax.traverse_util.flatten_dict(v['params'])
    zeroed = flax.traverse_util.unflatten_dict(
        {k: (jnp.zeros_like(a) if k[0] in ('mlp_gamma', 'mlp_beta') else a)
         for k, a in zeroed.items()})
    y, _ = spade.apply({**v, 'params': zeroed}, x, seg, True, mutable=['batch_stats'])
    mean = x.mean(axes, keepdims=True)
    expected = (x - mean) / jnp.sqrt(x.var(axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4, err_msg=kind)
    # With its learned MLP, SPADE modulates by the label map: the output changes with seg.
    y1 = spade.apply(v, x, seg, True, mutable=['batch_stats'])[0]
    y2 = spade.apply(v, x, jnp.roll(seg, 4, axis=2), True, mutable=['batch_stats'])[0]
    assert float(jnp.max(jnp.abs(y1 - y2))) > 1e-4


def test_spade_gamma_and_beta_in_one_conv_equal_two_conv_layers():
  """SPADE convolves mlp_gamma and mlp_beta as one conv with 2C outputs: same outputs and the
  same spectral-norm state updates as two `Conv` layers holding those params."""
  rng = np.random.RandomState(5)
  x = jnp.asarray(rng.randn(2, 8, 8, 6), jnp.float32)
  seg = one_hot_semantics(jnp.asarray(rng.randint(0, 5, (2, 8, 8))), 5)
  spade = SPADE(hidden=8, spectral_norm='all')
  v = spade.init(KEY, x, seg, False)
  y, new_state = spade.apply(v, x, seg, True, mutable=['batch_stats'])
  p, bs = v['params'], v['batch_stats']

  def conv(name, inp, features):
    return Conv(features, 3, spectral=True).apply(
        {'params': p[name], 'batch_stats': bs[name]}, inp, True, mutable=['batch_stats'])

  normalized = ParamFreeNorm('batch').apply({'batch_stats': bs['norm']}, x, True,
                                            mutable=['batch_stats'])[0]
  actv = jax.nn.relu(conv('mlp_shared', seg, 8)[0])
  (gamma, g_state), (beta, b_state) = conv('mlp_gamma', actv, 6), conv('mlp_beta', actv, 6)
  np.testing.assert_allclose(y, normalized * (1 + gamma) + beta, rtol=1e-5, atol=1e-5)
  for name, state in (('mlp_gamma', g_state), ('mlp_beta', b_state)):
    assert jax.tree.structure(p[name]) == jax.tree.structure(
        Conv(6, 3, spectral=True).init(KEY, actv)['params'])
    for a, b in zip(jax.tree.leaves(new_state['batch_stats'][name]),
                    jax.tree.leaves(state['batch_stats'])):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)


def test_resblock_learns_a_bias_free_shortcut_only_when_channels_change():
  x = jnp.ones((2, 4, 4, 8))
  seg = jnp.ones((2, 8, 8, 3))
  same = jax.eval_shape(lambda: SPADEResBlock(8, hidden=4).init(KEY, x, seg, False))['params']
  change = jax.eval_shape(lambda: SPADEResBlock(6, hidden=4).init(KEY, x, seg, False))['params']
  assert 'conv_s' not in same and 'norm_s' not in same
  assert set(change['conv_s']) == {'kernel'} and change['conv_s']['kernel'].shape == (1, 1, 8, 6)
  assert change['conv_0']['kernel'].shape == (3, 3, 8, 6)  # middle width min(fin, fout)
  assert same['norm_0']['mlp_shared']['kernel'].shape == (3, 3, 3, 4)


def sn_paths(tree):
  return {'/'.join(k[:-2]) for k in flax.traverse_util.flatten_dict(tree) if k[-1] == 'u'}


def kernel_paths(tree):
  return {'/'.join(k[:-1]) for k in flax.traverse_util.flatten_dict(tree) if k[-1] == 'kernel'}


def test_spectral_norm_placement_follows_the_config_mode():
  cfg = synthetic.get_config('tiny')
  h, w = C.image_size(cfg)
  sem = jax.ShapeDtypeStruct((1, h, w, C.semantic_nc(cfg)), jnp.float32)
  img = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  for mode in ('reference', 'all', 'none'):
    cfg.model.spectral_norm = mode
    nets = {'G': (build_generator(cfg), (sem,)), 'D': (build_discriminator(cfg), (sem, img)),
            'E': (build_style_encoder(cfg), (img,))}
    for name, (net, args) in nets.items():
      v = jax.eval_shape(lambda *a: net.init({'params': KEY, 'noise': KEY}, *a, train=False),
                         *args)
      sn, kernels = sn_paths(v.get('batch_stats', {})), kernel_paths(v['params'])
      if mode == 'all':
        assert sn == kernels, name
      elif mode == 'none':
        assert not sn, name
      elif name == 'G':  # conv_0 / conv_1 / conv_s of every SPADE ResBlock, nothing else
        assert sn == {k for k in kernels if k.startswith('trunk/')
                      and k.split('/')[-1] in ('conv_0', 'conv_1', 'conv_s')}
        assert sn and all(k.startswith('trunk/') for k in sn)
      elif name == 'D':  # the middle layers of every scale
        n = cfg.model.n_layers_D
        assert sn == {f'discriminator_{i}/conv_{j}' for i in range(cfg.model.num_D)
                      for j in range(1, n)}
      else:  # every conv of the style encoder, not its linear heads
        assert sn == {k for k in kernels if k.startswith('layer')}


def block_inputs():
  x = jax.random.normal(KEY, (2, 8, 8, 6))
  seg = one_hot_semantics(jax.random.randint(KEY, (2, 16, 16), 0, 4), 4)
  return x, seg


def test_remat_gives_the_same_outputs_gradients_and_parameter_layout():
  x, seg = block_inputs()
  v = jax.jit(lambda k: SPADEResBlock(4, hidden=4).init(k, x, seg, False))(KEY)  # one program

  def loss(params, remat):
    y, _ = resblock_class(remat)(4, hidden=4).apply({**v, 'params': params}, x, seg, True,
                                                    mutable=['batch_stats'])
    return jnp.sum(jnp.sin(y))

  run = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  (l0, g0), (l1, g1) = run(v['params'], False), run(v['params'], True)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  assert jax.tree.structure(g0) == jax.tree.structure(g1)
  scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g0))
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)
  # The trunk honours config.model.remat (the same parameters, rematerialised blocks).
  cfg = synthetic.get_config('tiny')
  cfg.model.remat = True
  assert build_generator(cfg).remat


def test_bfloat16_compute_keeps_float32_params():
  x, seg = block_inputs()
  v = SPADEResBlock(4, hidden=4).init(KEY, x, seg, False)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))
  run = jax.jit(lambda v: [SPADEResBlock(4, hidden=4, dtype=d).apply(v, x, seg, False)
                           for d in (jnp.bfloat16, jnp.float32)])
  y16, y32 = run(v)
  assert y16.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
  rel = float(jnp.linalg.norm(y16.astype(jnp.float32) - y32) / jnp.linalg.norm(y32))
  assert rel < 2e-2


def test_bfloat16_generator_returns_float32_outputs():
  cfg = synthetic.get_config('tiny')
  cfg.model.dtype = 'bfloat16'
  g = build_generator(cfg)
  h, w = C.image_size(cfg)
  sem = jax.ShapeDtypeStruct((2, h, w, C.semantic_nc(cfg)), jnp.float32)
  v = jax.eval_shape(lambda s: g.init({'params': KEY}, s, train=False), sem)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))
  out = jax.eval_shape(lambda v, s: g.apply(v, s, train=True, mutable=['batch_stats'])[0], v, sem)
  for key in ('image', 'coarse_image', 'edge', 'class_image'):
    assert out[key].dtype == jnp.float32, key
  assert all(e.dtype == jnp.float32 for e in out['embeddings'].values())


def test_batch_norm_statistics_match_torch_batchnorm():
  x = np.random.RandomState(5).randn(3, 4, 5, 6).astype(np.float32) * 2 + 0.5
  norm = ParamFreeNorm('batch')
  v = norm.init(KEY, jnp.asarray(x), False)
  y, upd = norm.apply(v, jnp.asarray(x), True, mutable=['batch_stats'])
  bn = torch.nn.BatchNorm2d(6, affine=False, momentum=0.1, eps=1e-5).train()
  ref = nhwc(bn(nchw(x)))
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
  # Running variance with the unbiased estimate, as PyTorch's (Sync)BatchNorm keeps it.
  np.testing.assert_allclose(upd['batch_stats']['mean'], bn.running_mean.numpy(), rtol=1e-5)
  np.testing.assert_allclose(upd['batch_stats']['var'], bn.running_var.numpy(), rtol=1e-5)
  y_eval = norm.apply(upd, jnp.asarray(x), False)
  np.testing.assert_allclose(y_eval, nhwc(bn.eval()(nchw(x)).detach()), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('k,stride,pad', [(4, 1, 2), (4, 2, 2), (3, 1, 1), (1, 1, 0)])
def test_conv2d_gradients_equal_xla_convolution_gradients(k, stride, pad):
  """conv2d's gradients (per-tap kernel gradient on CPU where the rule picks it: here for k = 4
  and 1) match autodiff of XLA's conv."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 10, 5))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 5, 7))
  xla = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  ours = functools.partial(layers.conv2d, stride=stride, pad=pad)
  loss = lambda conv: jax.jit(jax.value_and_grad(  # noqa: E731
      lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1)))(x, w)
  (va, (dxa, dwa)), (vb, (dxb, dwb)) = loss(ours), loss(xla)
  np.testing.assert_allclose(va, vb, rtol=1e-6)
  np.testing.assert_allclose(dxa, dxb, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dwa, dwb, rtol=1e-5, atol=1e-4 * float(jnp.max(jnp.abs(dwb))))


@pytest.mark.parametrize('mode', ['onehot', 'stopped'])
@pytest.mark.parametrize('k,stride,pad,block', [(3, 1, 1, (0, 12)), (4, 2, 2, (3, 12)),
                                                (3, 1, 1, (3, 12)), (1, 1, 0, (0, 15))])
def test_data_block_conv_equals_the_plain_convolution(k, stride, pad, block, mode):
  """Conv(onehot=(start, n)) gathers kernel rows for a one-hot block, Conv(stopped=...) convolves
  a block of any values on its own: same output, same kernel and other-input gradients as the
  plain convolution (with all-zero, no-class pixels and the block between dense channels), and no
  gradient to the block."""
  a, n = block
  c = 15
  rng = np.random.RandomState(0)
  ids = rng.randint(0, n + 1, (2, 9, 10))  # id n: a pixel with no class (all zeros)
  hot = np.eye(n + 1, dtype=np.float32)[ids][..., :n]
  if mode == 'stopped':
    hot = rng.rand(2, 9, 10, n).astype(np.float32)
  dense = rng.randn(2, 9, 10, c - n).astype(np.float32)
  x = jnp.asarray(np.concatenate([dense[..., :a], hot, dense[..., a:]], axis=-1))
  plain = Conv(7, k, strides=stride, padding=pad)
  gathered = Conv(7, k, strides=stride, padding=pad, **{mode: block})
  params = jax.jit(lambda k: jax.tree.map(lambda p: p + 0.1 * jax.random.normal(k, p.shape),
                                          plain.init(k, x)))(KEY)  # one program, not one per op
  assert jax.tree.structure(params) == jax.tree.structure(jax.eval_shape(gathered.init, KEY, x))

  def loss(mod):
    return jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(mod.apply(p, x))),
                                      argnums=(0, 1)))(params, x)

  (va, (dpa, dxa)), (vb, (dpb, dxb)) = loss(gathered), loss(plain)
  np.testing.assert_allclose(va, vb, rtol=1e-5)
  for ga, gb in zip(jax.tree.leaves(dpa), jax.tree.leaves(dpb)):
    np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-5)
  keep = np.r_[0:a, a + n:c]  # the one-hot channels are data: no gradient flows to them
  np.testing.assert_allclose(np.asarray(dxa)[..., keep], np.asarray(dxb)[..., keep], rtol=1e-5,
                             atol=1e-5)
  assert not np.any(np.asarray(dxa)[..., a:a + n])


def test_data_block_conv_rejects_a_block_outside_the_input_or_two_blocks():
  x = jnp.zeros((1, 4, 4, 5))
  with pytest.raises(ValueError, match=r'data channels \[3, 9\)'):
    Conv(2, 3, onehot=(3, 6)).init(KEY, x)
  with pytest.raises(ValueError, match='onehot or stopped'):
    Conv(2, 3, onehot=(0, 2), stopped=(2, 2)).init(KEY, x)


@pytest.mark.parametrize('k,stride,pad', [(3, 1, 1), (3, 2, 1), (4, 1, 2)])
def test_tap_kernel_gradient_equals_xla_kernel_gradient(k, stride, pad):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 10, 5))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 5, 7))
  y, vjp = jax.vjp(lambda w: layers._xla_conv(x, w, stride, pad), w)
  dy = jax.random.normal(jax.random.PRNGKey(2), y.shape)
  np.testing.assert_allclose(layers._tap_kernel_grad(x, dy, k, stride, pad), vjp(dy)[0],
                             rtol=1e-5, atol=1e-5)


def test_tap_kernel_gradient_rule_follows_the_measured_shapes():
  """XLA's kernel gradient for small 3x3 problems; per-tap matmuls for 4x4 kernels and for large
  ones (docs/performance.md has the timings behind each case)."""
  rule = lambda x, cout, k, ho: layers.use_tap_kernel_grad(  # noqa: E731
      x, (k, k, x[-1], cout), (x[0], ho, ho, cout))
  assert not rule((8, 64, 64, 128), 32, 3, 64)      # SPADE mlp_gamma at 64px, batch 8
  assert not rule((8, 64, 64, 173), 3, 3, 64)       # G_s conv_comb
  assert rule((8, 64, 64, 150), 173, 3, 64)         # G_s conv_comb2
  assert rule((1, 256, 256, 128), 64, 3, 256)       # SPADE mlp_gamma at 256px
  assert rule((1, 16, 16, 1024), 1024, 3, 16)       # the paper trunk's 16px convs
  assert rule((24, 9, 9, 64), 128, 4, 10)           # D's 4x4 stride-1 layer, however small


@pytest.mark.parametrize('shape', [(2, 8, 12, 32, 64), (1, 6, 4, 3, 5)])
def test_winograd_conv_equals_xla_convolution_and_its_gradients(shape):
  """F(2x2, 3x3) Winograd: the values and both autodiff gradients of XLA's 3x3, stride-1, pad-1
  convolution up to float32 rounding, also at odd channel counts and non-square maps."""
  b, h, w, cin, cout = shape
  x = jax.random.normal(jax.random.PRNGKey(0), (b, h, w, cin))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, cin, cout)) / np.sqrt(9 * cin)
  dy = jax.random.normal(jax.random.PRNGKey(2), (b, h, w, cout))

  def value_and_grads(f):  # one jitted program per side (eagerly: ~70 programs, one per op)
    def run(x, k, dy):
      y, vjp = jax.vjp(f, x, k)
      return y, vjp(dy)
    return jax.jit(run)(x, k, dy)

  ya, grads_a = value_and_grads(layers.winograd_conv3x3)
  yb, grads_b = value_and_grads(lambda x, k: layers._xla_conv(x, k, 1, 1))
  np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(yb))))
  for ga, gb in zip(grads_a, grads_b):
    np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(gb))))


def test_winograd_rule_takes_large_3x3_float32_convs_only():
  """The CPU backend's Winograd path: the paper's and the small preset's large SPADE, trunk and G_s
  convs, not thin ones, other kernels/strides, odd maps, bfloat16, the demo's or the test
  configs' small convs (docs/performance.md has the timings behind each case)."""
  rule = lambda x, cout, k=3, stride=1, pad=1, dtype=jnp.float32: layers.use_winograd(  # noqa: E731
      x, (k, k, x[-1], cout), stride, pad, dtype)
  assert rule((1, 256, 256, 128), 256)          # SPADE gamma+beta at 256px
  assert rule((1, 128, 128, 128), 512)
  assert rule((1, 16, 16, 1024), 1024)          # the paper trunk's 16px convs
  assert rule((1, 256, 256, 64), 64)            # the paper trunk's 256px convs
  assert rule((8, 64, 64, 151), 173)            # G_s at the small preset
  assert rule((8, 64, 64, 128), 64)             # SPADE gamma+beta at 64px, ngf 16
  assert not rule((1, 8, 8, 1024), 1024)        # 64 pixels
  assert not rule((8, 64, 64, 128), 32)         # thin output: slower
  assert not rule((8, 64, 64, 22), 151)         # thin input
  assert not rule((8, 64, 64, 32), 64)          # the demo's widest
  assert not rule((1, 256, 256, 128), 256, dtype=jnp.bfloat16)
  assert not rule((1, 256, 256, 128), 256, k=4, pad=2)
  assert not rule((1, 256, 256, 128), 256, stride=2)
  assert not rule((1, 255, 256, 128), 256)
  assert not rule((8, 32, 32, 64), 64)          # 0.3 GFLOP: a test config's size


def test_conv2d_runs_large_3x3_convs_without_a_convolution_on_cpu():
  """On the CPU backend a conv that `use_winograd` takes compiles to matmuls, forward and backward
  (no convolution op left), with XLA's values and gradients; a small one keeps XLA's conv."""
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 64, 64, 128))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 128, 128)) / np.sqrt(9 * 128)
  assert layers.use_winograd(x.shape, k.shape, 1, 1, x.dtype)
  loss = lambda conv: jax.jit(jax.value_and_grad(  # noqa: E731
      lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1)))
  ours = loss(functools.partial(layers.conv2d, stride=1, pad=1))
  hlo = ours.lower(x, k).compile().as_text()
  assert 'convolution(' not in hlo and ' dot(' in hlo
  (va, (dxa, dka)), (vb, (dxb, dkb)) = ours(x, k), loss(
      lambda x, k: layers._xla_conv(x, k, 1, 1))(x, k)
  np.testing.assert_allclose(va, vb, rtol=1e-5)
  np.testing.assert_allclose(dxa, dxb, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(dxb))))
  np.testing.assert_allclose(dka, dkb, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(dkb))))
  small = loss(functools.partial(layers.conv2d, stride=1, pad=1)).lower(
      x[..., :32], k[:, :, :32, :64]).compile().as_text()
  assert 'convolution(' in small
