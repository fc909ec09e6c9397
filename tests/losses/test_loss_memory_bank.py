"""Segmented memory bank against a sequential NumPy simulation; edge cases; pmap replicas agree."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgan_jax import losses


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


class NaiveBank:
  """The documented semantics, one write at a time: images in order, classes ascending, the
  segment mean then min(pixels, K) pixel rows; pointers advance by one per row and wrap."""

  def __init__(self, c, t, d):
    self.pq, self.sq = np.zeros((c, t, d)), np.zeros((c, t, d))
    self.pp, self.sp = np.zeros(c, int), np.zeros(c, int)
    self.pc, self.sc = np.zeros(c, int), np.zeros(c, int)
    self.t = t

  def update(self, emb, labels, k, ignore=None):
    c_total = self.pq.shape[0]
    for b in range(emb.shape[0]):
      lab, e = labels[b].reshape(-1), emb[b].reshape(-1, emb.shape[-1])
      for c in range(c_total):
        mask = (lab == c) & (lab != ignore)
        n = int(mask.sum())
        if n == 0:
          continue
        self.sq[c, self.sp[c]] = _unit(e[mask].mean(0))
        self.sp[c] = (self.sp[c] + 1) % self.t
        self.sc[c] = min(self.sc[c] + 1, self.t)
        for _ in range(min(n, k)):  # constant embedding per (image, class): any pixel is the same
          self.pq[c, self.pp[c]] = _unit(e[mask][0])
          self.pp[c] = (self.pp[c] + 1) % self.t
          self.pc[c] = min(self.pc[c] + 1, self.t)

  def check(self, bank):
    for name, want in (('pixel_queue', self.pq), ('segment_queue', self.sq), ('pixel_ptr', self.pp),
                       ('segment_ptr', self.sp), ('pixel_count', self.pc),
                       ('segment_count', self.sc)):
      np.testing.assert_allclose(np.asarray(getattr(bank, name)), want, rtol=1e-5, atol=1e-6,
                                 err_msg=name)


def _constant_regions(rng, labels, d):
  """Embeddings constant within each (image, class) region."""
  b = labels.shape[0]
  table = rng.normal(size=(b, 16, d))
  return np.stack([table[i][np.clip(labels[i], 0, 15)] for i in range(b)]).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('k', 'ignore'))
def _update(bank, key, emb, labels, k, ignore=None):
  return losses.update_memory_bank(bank, key, emb, labels, pixels_per_class=k, ignore_label=ignore)


def test_updates_match_sequential_simulation_through_wraparound_and_full_bank():
  rng = np.random.default_rng(0)
  c, t, d, k = 4, 5, 3, 2
  bank, naive = losses.init_memory_bank(c, t, d), NaiveBank(c, t, d)
  for step in range(6):  # pointers wrap several times; counts saturate at T
    labels = rng.integers(0, c, (3, 4, 4)).astype(np.int32)
    labels[0][labels[0] == 1] = 2  # class 1 absent from image 0 ...
    if step == 2:
      labels[:, :, :][labels == 3] = 0  # ... class 3 absent from the whole batch at step 2
    emb = _constant_regions(rng, labels, d)
    bank = _update(bank, jax.random.PRNGKey(step), jnp.asarray(emb), jnp.asarray(labels), k)
    naive.update(emb, labels, k)
    naive.check(bank)
  assert np.all(np.asarray(bank.pixel_count) == t) and np.all(np.asarray(bank.segment_count) == t)


def test_one_update_with_more_rows_than_the_bank_keeps_the_last_ones():
  rng = np.random.default_rng(1)
  c, t, d, k = 2, 3, 4, 2
  labels = np.zeros((4, 2, 2), np.int32)  # class 0 in all 4 images: 8 pixel rows, 4 segment rows
  labels[3, 0, 0] = 1  # class 1 in image 3 only (one pixel)
  emb = _constant_regions(rng, labels, d)
  bank0 = losses.init_memory_bank(c, t, d)
  naive = NaiveBank(c, t, d)
  naive.pp[:] = naive.sp[:] = 1  # start mid-buffer
  bank0 = bank0.replace(pixel_ptr=jnp.ones(c, jnp.int32), segment_ptr=jnp.ones(c, jnp.int32))
  bank = _update(bank0, jax.random.PRNGKey(0), jnp.asarray(emb), jnp.asarray(labels), k)
  naive.update(emb, labels, k)
  naive.check(bank)
  # Class present in one image only: one segment row, min(pixels, K) = 1 pixel row.
  assert int(bank.segment_count[1]) == 1 and int(bank.pixel_count[1]) == 1
  assert int(bank.pixel_ptr[1]) == 2 and int(bank.segment_ptr[1]) == 2


def test_ignore_and_out_of_range_labels_are_never_enqueued_and_class_0_is():
  rng = np.random.default_rng(2)
  labels = np.array([[[0, 0, 2, 2], [7, 7, 255, -1]]], np.int32)  # 2 ignored, 7/255/-1 out of range
  emb = _constant_regions(rng, labels, 3)
  bank = _update(losses.init_memory_bank(4, 6, 3), jax.random.PRNGKey(0), jnp.asarray(emb),
                 jnp.asarray(labels), 3, ignore=2)
  np.testing.assert_array_equal(bank.segment_count, [1, 0, 0, 0])
  np.testing.assert_array_equal(bank.pixel_count, [2, 0, 0, 0])
  np.testing.assert_array_equal(bank.pixel_ptr, [2, 0, 0, 0])
  assert np.all(np.asarray(bank.pixel_queue)[1:] == 0)


def test_random_pixel_rows_are_distinct_pixels_of_their_class_and_image():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 3, (2, 6, 6)).astype(np.int32)
  emb = _unit(rng.normal(size=(2, 6, 6, 5))).astype(np.float32)
  k = 4
  bank = _update(losses.init_memory_bank(3, 16, 5), jax.random.PRNGKey(7), jnp.asarray(emb),
                 jnp.asarray(labels), k)
  for c in range(3):
    rows = np.asarray(bank.pixel_queue[c, :int(bank.pixel_count[c])])
    start = 0
    for b in range(2):
      cand = emb[b][labels[b] == c]
      n = min(k, len(cand))
      got = rows[start:start + n]
      hits = [int(np.argmin(np.abs(cand - r).sum(-1))) for r in got]
      np.testing.assert_allclose(got, cand[hits], atol=1e-6)  # each row is a pixel of (b, c)
      assert len(set(hits)) == n  # drawn without replacement
      start += n


def test_bank_contrast_masks_unwritten_rows_and_empty_bank_gives_zero_loss():
  rng = np.random.default_rng(4)
  anchors = jnp.asarray(_unit(rng.normal(size=(6, 3))), jnp.float32)
  a_lab = jnp.array([0, 0, 1, 1, 2, 2])
  empty = losses.init_memory_bank(3, 4, 3)
  emb, lab, valid = losses.memory_bank_contrast(empty)
  assert emb.shape == (24, 3) and not np.any(valid)
  f = lambda a: losses.memory_bank_loss(a, a_lab, None, empty)
  assert float(f(anchors)) == 0.0 and np.all(np.isfinite(jax.grad(f)(anchors)))
  labels = np.array([[[0, 0, 1]]], np.int32)
  bank = _update(empty, jax.random.PRNGKey(0), jnp.asarray(_constant_regions(rng, labels, 3)),
                 jnp.asarray(labels), 1)
  emb, lab, valid = losses.memory_bank_contrast(bank)
  want_valid = np.zeros((3, 2, 4), bool)
  want_valid[0, :, 0] = want_valid[1, :, 0] = True  # one pixel and one segment row each
  np.testing.assert_array_equal(np.asarray(valid).reshape(3, 2, 4), want_valid)
  np.testing.assert_array_equal(np.asarray(lab).reshape(3, 2, 4)[:, 0, 0], [0, 1, 2])
  # Drawing more rows than written returns the written ones, masked beyond.
  emb_s, lab_s, valid_s = losses.memory_bank_contrast(bank, jax.random.PRNGKey(1), 3)
  assert emb_s.shape == (18, 3) and int(valid_s.sum()) == 4
  assert set(np.asarray(lab_s)[np.asarray(valid_s)].tolist()) == {0, 1}
  # Anchors of class 2 have no written positive: only classes 0 and 1 count, no NaN.
  loss = losses.memory_bank_loss(anchors, a_lab, None, bank)
  assert np.isfinite(float(loss)) and float(loss) > 0
  with pytest.raises(ValueError, match='key'):
    losses.memory_bank_contrast(bank, None, 2)


def test_bad_bank_inputs_raise():
  bank = losses.init_memory_bank(3, 4, 5)
  with pytest.raises(ValueError, match='dim'):
    losses.update_memory_bank(bank, jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 4)),
                              jnp.zeros((1, 2, 2), jnp.int32), pixels_per_class=1)
  with pytest.raises(ValueError, match='labels'):
    losses.update_memory_bank(bank, jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 5)),
                              jnp.zeros((1, 2, 3), jnp.int32), pixels_per_class=1)
  with pytest.raises(ValueError, match='>= 1'):
    losses.init_memory_bank(0, 4, 5)


def test_pmap_update_with_gathering_leaves_every_replica_with_the_same_bank():
  n_dev = jax.local_device_count()
  assert n_dev == 8
  rng = np.random.default_rng(5)
  c, t, d, k = 5, 16, 4, 2
  labels = jnp.asarray(rng.integers(0, c, (n_dev, 1, 4, 4)), jnp.int32)
  emb = jnp.asarray(_unit(rng.normal(size=(n_dev, 1, 4, 4, d))), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(0), n_dev)  # even different keys per replica

  def step(bank, key, e, l):
    return losses.update_memory_bank(bank, key, e, l, pixels_per_class=k, axis_name='batch')

  bank = losses.init_memory_bank(c, t, d)
  for _ in range(3):
    banks = jax.pmap(step, 'batch', in_axes=(None, 0, 0, 0))(bank, keys, emb, labels)
    for leaf in jax.tree.leaves(banks):
      leaf = np.asarray(leaf)
      assert np.all(leaf == leaf[0])
    bank = jax.tree.map(lambda x: x[0], banks)
  # Same counts as one device updating with the whole gathered batch (8 layouts).
  single = losses.init_memory_bank(c, t, d)
  for _ in range(3):
    single = _update(single, jax.random.PRNGKey(1), emb.reshape(-1, 4, 4, d),
                     labels.reshape(-1, 4, 4), k)
  for name in ('pixel_ptr', 'segment_ptr', 'pixel_count', 'segment_count'):
    np.testing.assert_array_equal(getattr(bank, name), getattr(single, name), err_msg=name)
  np.testing.assert_allclose(bank.segment_queue, single.segment_queue, atol=1e-6)


def test_shard_map_body_keeps_banks_identical_and_gathered_gradient_exact():
  """The trainer's other runner: jit(shard_map(..., check_vma=False)) over 8 devices."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  mesh = Mesh(np.asarray(jax.devices()), ('batch',))
  rng = np.random.default_rng(6)
  emb = jnp.asarray(rng.normal(size=(8, 4, 4, 6)), jnp.float32)  # unnormalised: large logits
  lab = jnp.asarray(rng.integers(0, 3, (8, 4, 4)), jnp.int32)
  emb, lab = (jax.device_put(x, NamedSharding(mesh, P('batch'))) for x in (emb, lab))
  key = jax.random.PRNGKey(0)
  kw = dict(num_classes=3, anchors_per_class=2)

  def body(bank, w, e, l):
    bank = losses.update_memory_bank(bank, key, e, l, pixels_per_class=2, axis_name='batch')
    loss = lambda w: losses.pixel_contrastive_loss(
        *losses.sample_anchors(key, e * w, l, axis_name='batch', **kw))
    val, g = jax.value_and_grad(loss)(w)
    return jax.tree.map(lambda x: x[None], bank), val[None], jax.lax.pmean(g, 'batch')[None]

  f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), P(), P('batch'), P('batch')),
                            out_specs=P('batch'), check_vma=False))
  banks, vals, grads = f(losses.init_memory_bank(3, 8, 6), jnp.float32(1.3), emb, lab)
  for leaf in jax.tree.leaves((banks, vals, grads)):
    leaf = np.asarray(leaf)
    assert np.all(leaf == leaf[0])
  assert np.all(np.asarray(banks.segment_count)[0] > 0)

  emb, lab = np.asarray(emb), np.asarray(lab)  # host copies: the reference slices them per device

  @jax.jit  # one program each, not ~130 eager ops
  def reference(w):
    parts = [losses.sample_anchors(jax.random.fold_in(key, d), emb[d:d + 1] * w, lab[d:d + 1], **kw)
             for d in range(8)]
    return losses.pixel_contrastive_loss(*(jnp.concatenate(x) for x in zip(*parts)))

  np.testing.assert_allclose(float(vals[0]), float(reference(1.3)), rtol=1e-5)
  ref_grad = float(jax.jit(jax.grad(reference))(1.3))
  assert np.isfinite(ref_grad)
  np.testing.assert_allclose(float(grads[0]), ref_grad, rtol=1e-4)
