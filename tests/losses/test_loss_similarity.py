"""similarity_loss (Eq. 2) against a plain NumPy loop over pixel pairs, and its memory bound."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax import losses

EPS = 1e-7


def naive_similarity(probs, labels, ignore_label=None, eps=EPS):
  """Eq. 2 written out: per image, BCE over all valid pixel pairs; mean over images."""
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels)
  b, h, w, n = probs.shape
  sh, sw = labels.shape[1] // h, labels.shape[2] // w
  per_image = []
  for im in range(b):
    pix = []
    for y in range(h):
      for x in range(w):
        c = labels[im, y * sh, x * sw]
        if 0 <= c < n and c != ignore_label:
          pix.append((c, probs[im, y, x]))
    if not pix:
      continue
    total = 0.0
    for ci, pi in pix:
      for cj, pj in pix:
        a = 1.0 if ci == cj else 0.0
        a2 = min(max(float(pi @ pj), eps), 1 - eps)
        total += -(a * np.log(a2) + (1 - a) * np.log(1 - a2))
    per_image.append(total / len(pix) ** 2)
  return float(np.mean(per_image)) if per_image else 0.0


def _inputs(seed=0, b=2, h=6, w=5, n=4, factor=2, ignore=None):
  rng = np.random.default_rng(seed)
  probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(b, h, w, n)) * 2, jnp.float32), axis=-1)
  labels = rng.integers(0, n, size=(b, h * factor, w * factor))
  if ignore is not None:
    labels[rng.random(labels.shape) < 0.2] = ignore
  labels[0, 0, 0] = 255  # out of range: excluded like an ignored pixel
  return probs, jnp.asarray(labels, jnp.int32)


@pytest.mark.parametrize('chunk_size', [None, 7, 16, 1000])
def test_similarity_matches_naive_pairwise_bce_for_any_chunk_size(chunk_size):
  probs, labels = _inputs(ignore=3)
  want = naive_similarity(probs, labels, ignore_label=3)
  got = losses.similarity_loss(probs, labels, ignore_label=3, chunk_size=chunk_size)
  np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_similarity_same_under_jit_and_gradients_finite():
  probs, labels = _inputs(seed=1)
  f = lambda p: losses.similarity_loss(p, labels, chunk_size=8)
  np.testing.assert_allclose(float(jax.jit(f)(probs)), float(f(probs)), rtol=1e-6)
  g = jax.grad(f)(probs)
  assert np.all(np.isfinite(g)) and np.any(g != 0)
  # The chunked gradient equals the unchunked one.
  g_full = jax.grad(lambda p: losses.similarity_loss(p, labels, chunk_size=None))(probs)
  np.testing.assert_allclose(g, g_full, rtol=1e-4, atol=1e-6)


def test_similarity_only_sees_co_membership_perfect_or_permuted_is_zero_merged_is_large():
  labels = jnp.asarray(np.random.default_rng(2).integers(0, 3, (1, 4, 4)), jnp.int32)
  perfect = jax.nn.one_hot(labels, 3)
  assert float(losses.similarity_loss(perfect, labels)) < 1e-5
  # A = [c_i = c_j] ignores class names: a relabelled (permuted) prediction is just as good.
  permuted = jax.nn.one_hot((labels + 1) % 3, 3)
  assert float(losses.similarity_loss(permuted, labels)) < 1e-5
  merged = jax.nn.one_hot(jnp.zeros_like(labels), 3)  # every pixel the same class
  assert float(losses.similarity_loss(merged, labels)) > 5.0


def test_similarity_all_pixels_ignored_gives_zero_and_finite_grad():
  probs, _ = _inputs()
  labels = jnp.full((2, 12, 10), 7, jnp.int32)  # 7 >= N = 4: every pixel excluded
  f = lambda p: losses.similarity_loss(p, labels, chunk_size=5)
  assert float(f(probs)) == 0.0
  assert np.all(np.isfinite(jax.grad(f)(probs)))


def test_similarity_subset_uses_only_valid_pixels():
  probs, labels = _inputs(seed=3, b=1, h=6, w=6, factor=1)
  labels = np.full((1, 6, 6), 9, np.int32)  # ignored everywhere ...
  keep = np.random.default_rng(0).choice(36, 10, replace=False)
  labels.reshape(-1)[keep] = np.arange(10) % 4  # ... except 10 pixels
  full = losses.similarity_loss(probs, jnp.asarray(labels), ignore_label=9)
  # A subset of exactly 10 pixels must pick exactly the 10 valid ones: the same loss.
  sub = losses.similarity_loss(probs, jnp.asarray(labels), ignore_label=9, num_pixels=10,
                               key=jax.random.PRNGKey(5), chunk_size=3)
  np.testing.assert_allclose(float(sub), float(full), rtol=1e-6)
  np.testing.assert_allclose(float(full), naive_similarity(probs, labels, 9), rtol=1e-5)


def test_similarity_subset_is_deterministic_per_key_and_varies_across_keys():
  probs, labels = _inputs(seed=4, h=8, w=8)
  f = lambda k: float(losses.similarity_loss(probs, labels, num_pixels=12, key=k))
  k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  assert f(k1) == f(k1) and f(k1) != f(k2)


def test_similarity_bad_inputs_raise_at_trace_time():
  probs, labels = _inputs()
  with pytest.raises(ValueError, match='divide'):
    losses.similarity_loss(probs, labels[:, :11])
  with pytest.raises(ValueError, match='integer'):
    losses.similarity_loss(probs, labels.astype(jnp.float32))
  with pytest.raises(ValueError, match='key'):
    losses.similarity_loss(probs, labels, num_pixels=5)
  with pytest.raises(ValueError, match='probs must be'):
    losses.similarity_loss(probs[0], labels)


def test_similarity_128x128_peak_memory_far_below_the_m_by_m_matrix():
  m = 128 * 128
  full_matrix = m * m * 4  # 1 GiB of float32
  probs = jax.ShapeDtypeStruct((1, 128, 128, 8), jnp.float32)
  labels = jax.ShapeDtypeStruct((1, 512, 512), jnp.int32)
  f = lambda p, l: losses.similarity_loss(p, l, chunk_size=512)
  fwd = jax.jit(f).lower(probs, labels).compile().memory_analysis().temp_size_in_bytes
  bwd = jax.jit(jax.value_and_grad(f)).lower(probs, labels).compile().memory_analysis()
  print(f'similarity 128x128 chunk 512: forward temp {fwd / 2**20:.1f} MiB, value_and_grad temp '
        f'{bwd.temp_size_in_bytes / 2**20:.1f} MiB (M x M would be {full_matrix / 2**20:.0f} MiB)')
  # O(M * chunk): one [chunk, M] float32 block forward, two in the backward pass.
  block = 512 * m * 4
  assert fwd <= 1.5 * block and fwd < full_matrix / 16
  assert bwd.temp_size_in_bytes <= 2.5 * block and bwd.temp_size_in_bytes < full_matrix / 8
  # And it runs: two chunk sizes agree.
  rng = np.random.default_rng(0)
  p = jax.nn.softmax(jnp.asarray(rng.normal(size=(1, 128, 128, 8)), jnp.float32), axis=-1)
  lab = jnp.asarray(rng.integers(0, 8, (1, 512, 512)), jnp.int32)
  a = jax.jit(f)(p, lab)
  b = jax.jit(lambda p, l: losses.similarity_loss(p, l, chunk_size=4096))(p, lab)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
