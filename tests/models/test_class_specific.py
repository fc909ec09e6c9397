"""G_c for every class: the segment-aware decoder equals a loop of per-class decoders, its cost does
not grow with the number of classes, and I_g reaches the final image (learned fusion)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax.models import class_specific
from ecgan_jax.models.semantics import one_hot_semantics

KEY = jax.random.PRNGKey(0)


def _label_map(h=16, w=16, n=12):
  """n classes in vertical bands, a 2-pixel class (id n - 1) inside band 0, -1 (no class) in one
  corner."""
  label = np.repeat(np.arange(w) * (n - 1) // w, h).reshape(w, h).T.copy()
  label[3, 1:3] = n - 1
  label[-2:, -2:] = -1
  return jnp.asarray(label[None], jnp.int32)


def _conv(x, kernel, bias):
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + bias


def _naive(params, f, ids, n):
  """The paper's form: per class c a decoder on F * m_c, re-masked to m_c after every layer,
  outputs masked and summed."""
  total = jnp.zeros(f.shape[:3] + (3,))
  names = sorted(k for k in params if k.startswith('conv_') and k != 'conv_out') + ['conv_out']
  for c in range(n):
    m = (ids == c)[..., None].astype(f.dtype)
    x = f * m
    for name in names:
      x = _conv(jax.nn.leaky_relu(x, 0.2), params[name]['kernel'], params[name]['bias']) * m
    total += jnp.tanh(x) * m
  return total


def test_segment_aware_decoder_equals_a_loop_of_per_class_decoders():
  n = 12
  ids = _label_map(n=n)
  assert int(jnp.sum(ids == n - 1)) == 2  # a class of two pixels
  assert len(np.unique(np.asarray(ids))) == n + 1  # 12 classes and the no-class pixels
  f = jax.random.normal(KEY, (1, 16, 16, 8))
  dec = class_specific.ClassSpecificDecoder(widths=(6, 5), spectral_norm='none')
  # non-zero biases, so that leaking a bias across segments would show (init and apply jitted:
  # one program each, not one per op)
  params = jax.jit(lambda k: jax.tree.map(lambda p: p + 0.1 * jax.random.normal(k, p.shape),
                                          dec.init(k, f, ids, False)['params']))(KEY)
  got = jax.jit(lambda p: dec.apply({'params': p}, f, ids, False))(params)
  want = _naive(params, f, ids, n)
  np.testing.assert_allclose(got, want, atol=1e-5)
  small = np.asarray(ids[0] == n - 1)
  assert np.all(np.abs(np.asarray(got[0])[small]) > 0)  # the 2-pixel class is generated
  assert np.all(np.asarray(got[0])[np.asarray(ids[0]) < 0] == 0)  # no class, no output


def test_segment_ids_drop_the_dont_care_class_and_empty_pixels():
  label = jnp.asarray([[[0, 1], [2, 3]]])
  sem = one_hot_semantics(label, 4)
  np.testing.assert_array_equal(class_specific.segment_ids(sem, 4, ignore_label=3),
                                [[[0, 1], [2, -1]]])
  np.testing.assert_array_equal(class_specific.segment_ids(sem * 0, 4), -1)


def _cost(n):
  """XLA flops and temporary bytes of the class-specific path (semantics -> ids -> I_g) at 32x32
  with n classes (fwd + bwd)."""
  dec = class_specific.ClassSpecificDecoder(widths=(16, 8), spectral_norm='none')
  f = jnp.zeros((1, 32, 32, 16))
  sem = jnp.zeros((1, 32, 32, n))
  variables = jax.eval_shape(lambda: dec.init(KEY, f, jnp.zeros((1, 32, 32), jnp.int32), False))

  def loss(v, f, sem):
    return jnp.sum(dec.apply(v, f, class_specific.segment_ids(sem, n), False))

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(variables, f, sem).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops']), compiled.memory_analysis().temp_size_in_bytes


def test_cost_is_flat_from_6_to_151_classes():
  flops6, temp6 = _cost(6)
  flops151, temp151 = _cost(151)
  assert flops6 > 1e6
  print(f'G_c fwd+bwd at 32x32: {flops6:.3g} flops, {temp6} temp bytes (6 classes); '
        f'{flops151:.3g}, {temp151} (151 classes)')
  # Only reading the one-hot map (argmax over its N channels: a few ops per element) grows with N;
  # a decoder per class would multiply the cost by ~151/6.
  assert flops151 - flops6 <= 10 * 32 * 32 * (151 - 6)
  assert temp151 <= 1.02 * temp6


@pytest.mark.parametrize('which', ['image', 'class_image'])
def test_learned_fusion_mixes_both_images_and_passes_gradients(which):
  fusion = class_specific.ClassFusion(spectral_norm='none')
  f = jax.random.normal(KEY, (1, 8, 8, 4))
  image, class_image = jnp.full((1, 8, 8, 3), -0.5), jnp.full((1, 8, 8, 3), 0.5)
  v = fusion.init(KEY, f, image, class_image, False)
  out = fusion.apply(v, f, image, class_image, False)
  assert np.all((np.asarray(out) > -0.5) & (np.asarray(out) < 0.5))  # strictly between
  args = {'image': image, 'class_image': class_image}
  g = jax.grad(lambda x: jnp.sum(fusion.apply(v, f, **{**args, which: x}, train=False)))(
      args[which])
  assert np.all(np.asarray(g) > 0)
