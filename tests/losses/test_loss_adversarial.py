"""gan_loss, feature_matching_loss, kl_divergence and perceptual_loss against plain NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax import losses


def _disc_outputs(seed):
  """Two scales of [feature, feature, logits] maps, as MultiscaleDiscriminator returns them."""
  rng = np.random.default_rng(seed)
  out = []
  for h in (8, 4):
    out.append([jnp.asarray(rng.normal(size=(2, h, h, c)) * 2, jnp.float32) for c in (3, 5, 1)])
  return out


def naive_gan(preds, real, for_d, mode):
  per_scale = []
  for scale in preds:
    x = np.asarray(scale[-1], np.float64).ravel()
    vals = []
    for v in x:
      if mode == 'hinge':
        vals.append(-v if not for_d else (max(0.0, 1 - v) if real else max(0.0, 1 + v)))
      elif mode == 'original':
        s = 1 / (1 + np.exp(-v))
        vals.append(-np.log(s) if real else -np.log(1 - s))
      else:
        vals.append((v - (1.0 if real else 0.0)) ** 2)
    per_scale.append(np.mean(vals))
  return float(np.mean(per_scale))


@pytest.mark.parametrize('mode', ['hinge', 'original', 'ls'])
@pytest.mark.parametrize('real,for_d', [(True, True), (False, True), (True, False)])
def test_gan_loss_matches_naive(mode, real, for_d):
  preds = _disc_outputs(0)
  f = lambda p: losses.gan_loss(p, real, for_discriminator=for_d, mode=mode)
  got = f(preds)
  np.testing.assert_allclose(float(got), naive_gan(preds, real, for_d, mode), rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(f)(preds)), float(got), rtol=1e-6)
  g = jax.grad(f)(preds)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
  # Bare logits per scale are accepted too.
  np.testing.assert_allclose(float(f([s[-1] for s in preds])), float(got), rtol=1e-6)


def test_gan_loss_bad_arguments_raise():
  preds = _disc_outputs(1)
  with pytest.raises(ValueError, match='gan mode'):
    losses.gan_loss(preds, True, mode='wgan')
  with pytest.raises(ValueError, match='target_is_real=True'):
    losses.gan_loss(preds, False, for_discriminator=False)
  with pytest.raises(ValueError, match='no discriminator outputs'):
    losses.gan_loss([], True)


def test_feature_matching_matches_naive_and_stops_real_gradient():
  fake, real = _disc_outputs(2), _disc_outputs(3)
  want = 0.0
  for fs, rs in zip(fake, real):
    for f, r in zip(fs[:-1], rs[:-1]):  # logits excluded
      want += np.mean(np.abs(np.asarray(f, np.float64) - np.asarray(r, np.float64)))
  want /= len(fake)
  got = losses.feature_matching_loss(fake, real)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(losses.feature_matching_loss)(fake, real)), float(got),
                             rtol=1e-6)
  g_fake, g_real = jax.grad(losses.feature_matching_loss, argnums=(0, 1))(fake, real)
  assert all(np.all(x == 0) for x in jax.tree.leaves(g_real))
  assert np.any(np.asarray(g_fake[0][0]) != 0) and np.all(np.asarray(g_fake[0][-1]) == 0)
  with pytest.raises(ValueError, match='same number of scales'):
    losses.feature_matching_loss(fake[:1], real)
  with pytest.raises(ValueError, match='shapes differ'):
    losses.feature_matching_loss([[fake[0][0][:1], fake[0][-1]]], [real[0][::2]])


def test_kl_divergence_matches_naive_and_is_zero_at_the_prior():
  rng = np.random.default_rng(4)
  mu, logvar = rng.normal(size=(3, 7)), rng.normal(size=(3, 7)) * 0.5
  per = [-0.5 * sum(1 + logvar[b, i] - mu[b, i] ** 2 - np.exp(logvar[b, i]) for i in range(7))
         for b in range(3)]
  mu_j, lv_j = jnp.asarray(mu, jnp.float32), jnp.asarray(logvar, jnp.float32)
  np.testing.assert_allclose(float(losses.kl_divergence(mu_j, lv_j)), np.mean(per), rtol=1e-5)
  np.testing.assert_allclose(float(losses.kl_divergence(mu_j, lv_j, reduction='sum')), np.sum(per),
                             rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(losses.kl_divergence)(mu_j, lv_j)),
                             float(losses.kl_divergence(mu_j, lv_j)), rtol=1e-6)
  assert float(losses.kl_divergence(jnp.zeros((2, 4)), jnp.zeros((2, 4)))) == 0.0
  assert np.all(np.isfinite(jax.grad(lambda m: losses.kl_divergence(m, lv_j))(mu_j)))
  with pytest.raises(ValueError, match='z_dim'):
    losses.kl_divergence(mu_j, lv_j[:, :3])
  with pytest.raises(ValueError, match='reduction'):
    losses.kl_divergence(mu_j, lv_j, reduction='mean')


def _toy_vgg(x):
  """Five 'features' at strides 1..16 (avg-pool + fixed channel mixing + relu), any [B,H,W,3]."""
  feats = []
  rng = np.random.default_rng(0)
  h = x
  for i, c in enumerate((4, 6, 8, 8, 8)):
    if i:
      b, hh, ww, ch = h.shape
      h = h.reshape(b, hh // 2, 2, ww // 2, 2, ch).mean((2, 4))
    w = jnp.asarray(rng.normal(size=(h.shape[-1], c)), jnp.float32)
    h = jax.nn.relu(h @ w)
    feats.append(h)
  return tuple(feats)


def test_perceptual_loss_matches_naive_weighted_l1_and_stops_the_target():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  y = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  fx, fy = _toy_vgg(x), _toy_vgg(y)
  weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
  want = sum(w * np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
             for w, a, b in zip(weights, fx, fy))
  f = lambda a, b: losses.perceptual_loss(_toy_vgg, a, b)
  np.testing.assert_allclose(float(f(x, y)), want, rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(f)(x, y)), float(f(x, y)), rtol=1e-6)
  gx, gy = jax.jit(jax.grad(f, argnums=(0, 1)))(x, y)
  assert np.all(np.isfinite(gx)) and np.any(np.asarray(gx) != 0) and np.all(np.asarray(gy) == 0)
  assert float(f(x, x)) == 0.0
  with pytest.raises(ValueError, match='one shape'):
    f(x, y[:1])
  with pytest.raises(ValueError, match='features'):
    losses.perceptual_loss(lambda im: _toy_vgg(im)[:4], x, y)


def test_perceptual_losses_equal_the_separate_losses_from_one_vgg_call_on_distinct_targets():
  rng = np.random.default_rng(6)
  x1, x2, x3, y, e = (jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
                      for _ in range(5))
  calls = []

  def vgg(im):
    calls.append(im.shape[0])
    return _toy_vgg(im)

  pairs = [(x1, y), (x2, y), (x3, e)]
  got = losses.perceptual_losses(vgg, pairs)
  assert calls == [2 * 5]  # one call on [x1; x2; x3; y; e]: y's features once, not twice
  for (x, t), g in zip(pairs, got):
    np.testing.assert_allclose(float(g), float(losses.perceptual_loss(_toy_vgg, x, t)), rtol=1e-6)
  # Gradients reach every x and no target, as with the separate losses.
  total = lambda a, b, c, t: sum(losses.perceptual_losses(_toy_vgg, [(a, t), (b, t), (c, e)]))
  separate = lambda a, b, c, t: sum(losses.perceptual_loss(_toy_vgg, p, q)
                                    for p, q in ((a, t), (b, t), (c, e)))
  grads = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3)))(x1, x2, x3, y)  # jitted: 2 programs,
  want = jax.jit(jax.grad(separate, argnums=(0, 1, 2, 3)))(x1, x2, x3, y)  # not ~150 eager ops
  for g, w in zip(grads, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-8)
  assert np.all(np.asarray(grads[3]) == 0)
  with pytest.raises(ValueError, match='one shape'):
    losses.perceptual_losses(_toy_vgg, [(x1, y), (x2[:1], y[:1])])
  with pytest.raises(ValueError, match='at least one'):
    losses.perceptual_losses(_toy_vgg, [])
