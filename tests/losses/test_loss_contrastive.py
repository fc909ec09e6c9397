"""Eqs. 4-6 and the class-specific L1 against plain NumPy loops; anchor sampling; pmap gathering."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax import losses


def naive_eq4(a, la, va, c, lc, vc, tau, exclude_self):
  """Eq. 4 per anchor, mean over valid anchors with >= 1 positive (float64 loops)."""
  a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
  per_anchor = []
  for i in range(len(a)):
    if not va[i]:
      continue
    pos, neg = [], []
    for j in range(len(c)):
      if not vc[j] or (exclude_self and i == j):
        continue
      s = a[i] @ c[j] / tau
      (pos if lc[j] == la[i] else neg).append(s)
    if not pos:
      continue
    terms = [-np.log(np.exp(p) / (np.exp(p) + sum(np.exp(n) for n in neg))) for p in pos]
    per_anchor.append(sum(terms) / len(pos))
  return float(np.mean(per_anchor)) if per_anchor else 0.0


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _set(rng, n, d=6, classes=4, p_valid=0.8):
  emb = jnp.asarray(_unit(rng.normal(size=(n, d))), jnp.float32)
  lab = jnp.asarray(rng.integers(0, classes, n), jnp.int32)
  valid = jnp.asarray(rng.random(n) < p_valid)
  return emb, lab, valid


@pytest.mark.parametrize('chunk_size', [None, 3, 64])
def test_pixel_contrastive_matches_naive_eq4_within_a_set(chunk_size):
  rng = np.random.default_rng(0)
  a = _set(rng, 20)
  got = losses.pixel_contrastive_loss(*a, temperature=0.1, chunk_size=chunk_size)
  want = naive_eq4(*a, *a, tau=0.1, exclude_self=True)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_pixel_contrastive_matches_naive_eq4_against_a_separate_set_with_large_logits():
  rng = np.random.default_rng(1)
  a, c = _set(rng, 15), _set(rng, 30)
  got = losses.pixel_contrastive_loss(*a, *c, temperature=0.07)
  np.testing.assert_allclose(float(got), naive_eq4(*a, *c, 0.07, False), rtol=1e-5)
  # Unnormalised embeddings: logits up to ~+-100 stay finite (the naive float64 loop still copes).
  big = (a[0] * 5.0, a[1], a[2])
  got = losses.pixel_contrastive_loss(*big, *c, temperature=0.07)
  np.testing.assert_allclose(float(got), naive_eq4(*big, *c, 0.07, False), rtol=1e-5)
  # Logits up to +-290: values still match and gradients stay finite (exp(logit - max negative)
  # would overflow for positives if it were not masked first).
  huge = (a[0] * 20.0, a[1], a[2])
  got = losses.pixel_contrastive_loss(*huge, *c, temperature=0.07)
  np.testing.assert_allclose(float(got), naive_eq4(*huge, *c, 0.07, False), rtol=1e-5)
  g = jax.grad(lambda x, y: losses.pixel_contrastive_loss(x, a[1], a[2], y, c[1], c[2],
                                                          temperature=0.07), (0, 1))(huge[0], c[0])
  assert all(np.all(np.isfinite(x)) for x in g)


def test_pixel_contrastive_same_under_jit_and_gradients_finite():
  rng = np.random.default_rng(2)
  a, c = _set(rng, 12), _set(rng, 25)
  f = lambda x, y: losses.pixel_contrastive_loss(x, a[1], a[2], y, c[1], c[2], chunk_size=5)
  np.testing.assert_allclose(float(jax.jit(f)(a[0], c[0])), float(f(a[0], c[0])), rtol=1e-6)
  gx, gy = jax.grad(f, argnums=(0, 1))(a[0], c[0])
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy)) and np.any(gx != 0)
  assert np.all(np.asarray(gx)[~np.asarray(a[2])] == 0)  # masked anchors get no gradient


def test_pixel_contrastive_masked_cases_are_documented_values_not_nan():
  emb = jnp.asarray(_unit(np.random.default_rng(3).normal(size=(4, 3))), jnp.float32)
  lab = jnp.array([0, 0, 1, 1])
  # No valid anchor at all: 0.0 with finite gradients.
  f = lambda e: losses.pixel_contrastive_loss(e, lab, jnp.zeros(4, bool))
  assert float(f(emb)) == 0.0 and np.all(np.isfinite(jax.grad(f)(emb)))
  # One class only: positives but no negatives -> -log(1) = 0 per anchor, finite gradient.
  g = lambda e: losses.pixel_contrastive_loss(e, jnp.zeros(4, jnp.int32))
  assert float(g(emb)) == 0.0 and np.all(np.isfinite(jax.grad(g)(emb)))
  # Every anchor its own class: no positives -> masked -> 0.0.
  h = lambda e: losses.pixel_contrastive_loss(e, jnp.arange(4))
  assert float(h(emb)) == 0.0 and np.all(np.isfinite(jax.grad(h)(emb)))


def test_pixel_contrastive_bad_inputs_raise():
  e, l = jnp.ones((4, 3)), jnp.zeros(4, jnp.int32)
  for t in (0.0, -1.0):
    with pytest.raises(ValueError, match='temperature'):
      losses.pixel_contrastive_loss(e, l, temperature=t)
  with pytest.raises(ValueError, match='anchors must be'):
    losses.pixel_contrastive_loss(e, l[:3])
  with pytest.raises(ValueError, match='contrast must be'):
    losses.pixel_contrastive_loss(e, l, None, jnp.ones((5, 2)), jnp.zeros(5, jnp.int32))
  with pytest.raises(ValueError, match='integer'):
    losses.pixel_contrastive_loss(e, l.astype(jnp.float32))


def _index_embeddings(b, h, w, d=4):
  """Embeddings whose first channel is the flat pixel index (to see which pixel was drawn)."""
  idx = np.arange(b * h * w, dtype=np.float32).reshape(b, h, w, 1)
  return jnp.asarray(np.concatenate([idx, np.ones((b, h, w, d - 1), np.float32)], -1))


def test_sample_anchors_draws_distinct_pixels_of_the_right_class_within_budget():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 6, (2, 8, 8)).astype(np.int32)
  labels[labels == 5] = 255  # out of range (num_classes 5)
  labels[0, :, :] = np.where(labels[0] == 4, 3, labels[0])  # class 4 only in image 1
  labels[1][labels[1] == 4] = 2
  labels[0, 0, 0] = 4  # class 4: exactly one pixel
  labels[labels == 1] = 9  # ignore id
  emb = _index_embeddings(2, 8, 8)
  a = losses.sample_anchors(jax.random.PRNGKey(0), emb, jnp.asarray(labels), num_classes=5,
                            anchors_per_class=3, max_classes=4, ignore_label=9)
  assert a.embeddings.shape == (12, 4) and a.labels.shape == (12,) and a.valid.shape == (12,)
  flat = labels.reshape(-1)
  drawn = {}
  for e, c, v in zip(np.asarray(a.embeddings), np.asarray(a.labels), np.asarray(a.valid)):
    if v:
      assert flat[int(e[0])] == c  # the pixel has the anchor's class
      drawn.setdefault(int(c), []).append(int(e[0]))
    else:
      assert np.all(e == 0)
  present = {0, 2, 3, 4}  # 1 ignored, 5 -> 255 out of range
  assert set(drawn) == present  # max_classes 4 = number of present classes: all chosen
  for c, pix in drawn.items():
    assert len(set(pix)) == len(pix) == min(3, int(np.sum(flat == c)))


def test_sample_anchors_chooses_max_classes_among_present_ones():
  labels = jnp.asarray(np.arange(6 * 16).reshape(1, 6, 16) % 6, jnp.int32)
  for seed in range(3):
    a = losses.sample_anchors(jax.random.PRNGKey(seed), _index_embeddings(1, 6, 16), labels,
                              num_classes=10, anchors_per_class=2, max_classes=3)
    chosen = set(np.asarray(a.labels)[np.asarray(a.valid)].tolist())
    assert len(chosen) == 3 and chosen <= set(range(6))


def _multiscale_inputs(seed=5, b=2, h=16, w=16, d=8, classes=4):
  rng = np.random.default_rng(seed)
  labels = jnp.asarray(rng.integers(0, classes, (b, h, w)), jnp.int32)
  embs = {f's{s}': jnp.asarray(_unit(rng.normal(size=(b, h // s, w // s, d))), jnp.float32)
          for s in (1, 4, 8, 16)}
  return labels, embs


def test_multiscale_matches_naive_weighted_sum_of_eq4_per_scale():
  labels, embs = _multiscale_inputs()
  key = jax.random.PRNGKey(1)
  kw = dict(num_classes=4, anchors_per_class=3, max_classes=4)
  got = losses.multiscale_contrastive_loss(key, embs, labels, temperature=0.1, **kw)
  anchors = losses.sample_multiscale_anchors(key, embs, labels, strides=(1, 4, 8, 16), **kw)
  want = 0.0
  for s, w in zip((1, 4, 8, 16), (1.0, 0.7, 0.4, 0.1)):
    a = anchors[s]
    # Labels per scale are the nearest-downsampled (strided) label map.
    lab_s = np.asarray(labels)[:, ::s, ::s]
    emb_s = np.asarray(embs[f's{s}']).reshape(-1, 8)
    for e, c, v in zip(np.asarray(a.embeddings), np.asarray(a.labels), np.asarray(a.valid)):
      if v:
        row = np.argmin(np.abs(emb_s - e).sum(-1))
        assert lab_s.reshape(-1)[row] == c
    want += w * naive_eq4(*a, *a, tau=0.1, exclude_self=True)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_cross_scale_matches_naive_bidirectional_pairs():
  labels, embs = _multiscale_inputs(seed=6)
  key = jax.random.PRNGKey(2)
  kw = dict(num_classes=4, anchors_per_class=3, max_classes=4)
  got = losses.cross_scale_contrastive_loss(key, embs, labels, temperature=0.1, **kw)
  anchors = losses.sample_multiscale_anchors(key, embs, labels, strides=(4, 8, 16), **kw)
  want = 0.0
  for p, q in ((4, 8), (4, 16)):
    want += 0.1 * 0.5 * (naive_eq4(*anchors[p], *anchors[q], 0.1, False)
                         + naive_eq4(*anchors[q], *anchors[p], 0.1, False))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  assert float(got) > 0


def test_multiscale_and_cross_scale_jit_equal_and_grads_finite():
  labels, embs = _multiscale_inputs(seed=7)
  key = jax.random.PRNGKey(3)
  kw = dict(num_classes=4, anchors_per_class=4, max_classes=3)
  banks = _banks(embs, labels, key)

  def f(e, banks=None):
    return (losses.multiscale_contrastive_loss(key, e, labels, banks=banks,
                                               bank_samples_per_class=4,
                                               chunk_size=5 if banks else None, **kw)
            + losses.cross_scale_contrastive_loss(key, e, labels, **kw))

  np.testing.assert_allclose(float(jax.jit(f)(embs)), float(f(embs)), rtol=1e-6)
  with_bank = jax.jit(jax.value_and_grad(f))
  val, g = with_bank(embs, banks)
  assert np.isfinite(float(val)) and float(val) != float(jax.jit(f)(embs))
  for k, v in g.items():
    assert np.all(np.isfinite(v)), k
  assert np.any(np.asarray(g['s1']) != 0) and np.any(np.asarray(g['s16']) != 0)


def _banks(embs, labels, key):
  """One bank per stride, each filled from that stride's embeddings."""
  update = jax.jit(lambda e, l: losses.update_memory_bank(
      losses.init_memory_bank(4, 8, 8), key, e, l, pixels_per_class=2))
  return {k: update(e, losses.downsample_labels(labels, e.shape[1:3])) for k, e in embs.items()}


def test_a_stride_s_anchor_is_contrasted_only_with_the_stride_s_bank():
  labels, embs = _multiscale_inputs(seed=7)
  key = jax.random.PRNGKey(3)
  banks = _banks(embs, labels, key)
  flip = lambda b: b.replace(pixel_queue=-b.pixel_queue, segment_queue=-b.segment_queue)
  loss = jax.jit(lambda banks: losses.multiscale_contrastive_loss(
      key, embs, labels, num_classes=4, anchors_per_class=4, max_classes=3, strides=(1, 4),
      weights=(0.0, 1.0), banks=banks, bank_samples_per_class=4))  # only the stride-4 term counts
  base = float(loss(banks))
  assert float(loss({**banks, 's1': flip(banks['s1']), 's8': flip(banks['s8'])})) == base
  assert float(loss({**banks, 's4': flip(banks['s4'])})) != base
  with pytest.raises(ValueError, match='no bank for stride 4'):
    loss({'s1': banks['s1']})


def test_multiscale_missing_scale_or_bad_weights_raise():
  labels, embs = _multiscale_inputs()
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="no scale 's2'"):
    losses.multiscale_contrastive_loss(key, embs, labels, num_classes=4, strides=(1, 2),
                                       weights=(1, 1))
  with pytest.raises(ValueError, match='weights'):
    losses.multiscale_contrastive_loss(key, embs, labels, num_classes=4, weights=(1.0,))
  with pytest.raises(ValueError, match='different strides'):
    losses.cross_scale_contrastive_loss(key, embs, labels, num_classes=4, pairs=((4, 4),))


def test_gathered_anchors_identical_on_all_replicas_and_gradient_is_exact():
  """8 devices x 1 layout: every replica contrasts anchors from all 8 layouts; the pmean'd gradient
  equals the gradient of the same loss computed on one device from the 8 per-device draws."""
  n_dev = jax.local_device_count()
  assert n_dev == 8
  rng = np.random.default_rng(8)
  emb = jnp.asarray(_unit(rng.normal(size=(n_dev, 1, 4, 4, 6))), jnp.float32)
  lab = jnp.asarray(rng.integers(0, 3, (n_dev, 1, 4, 4)), jnp.int32)
  key = jax.random.PRNGKey(0)
  kw = dict(num_classes=3, anchors_per_class=2, max_classes=3)

  def replica(w, e, l):
    def loss(w):
      a = losses.sample_anchors(key, e * w, l, axis_name='batch', **kw)
      return losses.pixel_contrastive_loss(*a), a.labels
    (val, labs), g = jax.value_and_grad(loss, has_aux=True)(w)
    return val, labs, jax.lax.pmean(g, 'batch')

  w = jnp.float32(1.3)
  vals, labs, grads = jax.pmap(replica, 'batch', in_axes=(None, 0, 0))(w, emb, lab)
  assert np.all(np.asarray(vals) == np.asarray(vals)[0])
  assert labs.shape == (n_dev, n_dev * 6) and np.all(np.asarray(labs) == np.asarray(labs)[0])

  @jax.jit  # one program each, not ~120 eager ops
  def reference(w):
    parts = [losses.sample_anchors(jax.random.fold_in(key, d), emb[d] * w, lab[d], **kw)
             for d in range(n_dev)]
    return losses.pixel_contrastive_loss(*(jnp.concatenate(x) for x in zip(*parts)))

  np.testing.assert_allclose(np.asarray(vals)[0], float(reference(w)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grads)[0], float(jax.jit(jax.grad(reference))(w)),
                             rtol=1e-4)


def naive_class_l1(class_image, image, labels, num_classes, ignore_label):
  """The paper's form: per class c, mean |m_c image - m_c I_g| over H, W, 3, summed over classes,
  averaged over the batch."""
  total = 0.0
  for i in range(image.shape[0]):
    for c in range(num_classes):
      if c == ignore_label:
        continue
      m = (labels[i] == c)[..., None]
      total += np.mean(np.abs(image[i] * m - class_image[i] * m))
  return total / image.shape[0]


def test_class_specific_l1_matches_the_per_class_sum_and_skips_dont_care():
  rng = np.random.default_rng(9)
  b, h, w = 2, 5, 4
  class_image = rng.normal(size=(b, h, w, 3)).astype(np.float32)
  image = rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)
  labels = rng.integers(0, 5, (b, h, w)).astype(np.int32)
  kw = dict(num_classes=5, ignore_label=4)
  got = losses.class_specific_l1_loss(class_image, image, labels, **kw)
  np.testing.assert_allclose(float(got), naive_class_l1(class_image, image, labels, 5, 4),
                             rtol=1e-5)
  g = jax.grad(lambda x: losses.class_specific_l1_loss(x, image, labels, **kw))(class_image)
  assert np.all(np.asarray(g)[labels == 4] == 0) and np.all(np.asarray(g)[labels < 4] != 0)
  with pytest.raises(ValueError, match='expected class_image'):
    losses.class_specific_l1_loss(class_image[:, :-1], image, labels, **kw)


def test_losses_vmap_over_a_leading_axis_like_a_python_loop():
  rng = np.random.default_rng(10)
  sets = [_set(rng, 10) for _ in range(3)]
  stacked = [jnp.stack(x) for x in zip(*sets)]
  got = jax.vmap(lambda e, l, v: losses.pixel_contrastive_loss(e, l, v, chunk_size=4))(*stacked)
  one = jax.jit(losses.pixel_contrastive_loss)
  want = [float(one(*s)) for s in sets]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
  probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(3, 1, 4, 4, 3)), jnp.float32), axis=-1)
  labels = jnp.asarray(rng.integers(0, 3, (3, 1, 8, 8)), jnp.int32)
  got = jax.vmap(lambda p, l: losses.similarity_loss(p, l, chunk_size=5))(probs, labels)
  one = jax.jit(losses.similarity_loss)
  want = [float(one(p, l)) for p, l in zip(probs, labels)]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
