"""Segmented memory bank (Sec. 3.3, "global" context across layouts) as pure state + functions.

Per class c the bank keeps two ring buffers of L2-normalised embeddings:
  pixel_queue [C, T, D]: single pixel embeddings, up to K random pixels per class per image;
  segment_queue [C, T, D]: the mean embedding of each class region of each image.
with write pointers (next row to write) and fill counts per class and queue. A row is "written"
iff its index is < the class's count; never-written rows are masked in every contrast.

Differences from ContrastiveSeg's `_dequeue_and_enqueue` (the reference people know):
  * pointers advance by the number of rows written (theirs by 1 after writing K pixel rows, so most
    of each write is overwritten by the next one) and wrap modulo T, writes splitting across the
    end of the buffer;
  * the K pixels are drawn from the pixels of the class (theirs index the whole image with a
    permutation of the class's pixel count);
  * class 0 is enqueued like any other; only ids outside [0, C) and `ignore_label` are skipped;
  * fill counts make unwritten (zero) rows invisible instead of contrasting against them;
  * a batch writes every image's rows in image order; if a class gets more than T rows in one
    update only the last T are kept (exactly what sequential writes would leave);
  * under pmap the writes are all_gathered first, so every replica applies the same update and
    the banks stay bit-identical.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from ecgan_jax.losses import sampling

Array = jax.Array


@flax.struct.dataclass
class MemoryBank:
  """Bank state (a pytree; checkpoint it with the train state).

  pixel_queue, segment_queue: float32 [C, T, D]; pixel_ptr, segment_ptr: int32 [C] next row to
  write; pixel_count, segment_count: int32 [C] rows written so far, saturating at T.
  """
  pixel_queue: Array
  segment_queue: Array
  pixel_ptr: Array
  segment_ptr: Array
  pixel_count: Array
  segment_count: Array

  @property
  def num_classes(self) -> int:
    return self.pixel_queue.shape[0]

  @property
  def size(self) -> int:
    return self.pixel_queue.shape[1]

  @property
  def dim(self) -> int:
    return self.pixel_queue.shape[2]


def init_memory_bank(num_classes: int, size: int, dim: int) -> MemoryBank:
  """An empty bank for classes 0..num_classes-1, `size` (T) rows per class per queue, dim D."""
  if num_classes < 1 or size < 1 or dim < 1:
    raise ValueError(f'memory bank needs num_classes, size, dim >= 1; got {num_classes}, {size}, '
                     f'{dim}')
  queue = jnp.zeros((num_classes, size, dim), jnp.float32)
  zeros = jnp.zeros((num_classes,), jnp.int32)
  return MemoryBank(queue, queue, zeros, zeros, zeros, zeros)


def _l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _enqueue(queue: Array, ptr: Array, count: Array, values: Array,
             write: Array) -> tuple[Array, Array, Array]:
  """Ring-buffer writes. values [B, C, R, D], write bool [B, C, R]; per class the rows are written
  in (image, slot) order starting at ptr. Returns (queue, ptr, count)."""
  n_cls, size = queue.shape[:2]
  b, _, r, d = values.shape
  write = jnp.moveaxis(write, 1, 0).reshape(n_cls, b * r)  # [C, B*R] in write order
  values = jnp.moveaxis(values, 1, 0).reshape(n_cls, b * r, d)
  seq = jnp.cumsum(write, axis=1) - write  # rank of each write within its class
  total = jnp.sum(write, axis=1).astype(jnp.int32)  # [C]
  keep = write & (seq >= (total - size)[:, None])  # only the last T survive a wrap-around
  row = jnp.where(keep, (ptr[:, None] + seq) % size, size)  # size = out of bounds -> dropped
  cls = jnp.broadcast_to(jnp.arange(n_cls)[:, None], row.shape)
  queue = queue.at[cls, row].set(values.astype(queue.dtype), mode='drop')
  return queue, (ptr + total) % size, jnp.minimum(count + total, size)


def update_memory_bank(bank: MemoryBank, key: Array, embeddings: Array, labels: Array, *,
                       pixels_per_class: int, ignore_label: int | None = None,
                       axis_name: str | None = None) -> MemoryBank:
  """Enqueues, for every class present in each image, its mean embedding and K random pixels.

  Args:
    bank: the current state (C classes, T rows, dim D).
    key: PRNG key for the pixel choice (folded with the device index under `axis_name`).
    embeddings: [B, H, W, D] pixel embeddings (gradients are stopped).
    labels: int [B, H, W] class ids at the embeddings' resolution; ids outside [0, C) and
      `ignore_label` are never enqueued.
    pixels_per_class: K, static; a class with fewer pixels in an image writes all of them.
    axis_name: if set, every device's writes are all_gathered and applied in device order, so all
      replicas end with the same bank.
  Returns:
    The new bank: per class, segment rows += images containing it, pixel rows += sum of
    min(pixels, K); pointers advance by the rows written (mod T); counts saturate at T. Segment
    means and pixels are L2-normalised before writing.
  """
  if embeddings.ndim != 4 or labels.shape != embeddings.shape[:3]:
    raise ValueError(f'embeddings must be [B, H, W, D] and labels [B, H, W]; got {embeddings.shape}'
                     f' and {labels.shape}')
  if embeddings.shape[-1] != bank.dim:
    raise ValueError(f'embedding dim {embeddings.shape[-1]} != memory bank dim {bank.dim}')
  n_cls = bank.num_classes
  b = embeddings.shape[0]
  emb = jax.lax.stop_gradient(embeddings).astype(jnp.float32).reshape(b, -1, bank.dim)
  valid = sampling.valid_label_mask(labels, n_cls, ignore_label).reshape(b, -1)
  flat_labels = labels.reshape(b, -1)
  keys = jax.random.split(sampling.device_key(key, axis_name), b)

  def per_image(k, e, lab, ok):
    index, drawn, counts = sampling.random_pixels_per_class(k, lab, ok, n_cls, pixels_per_class)
    seg = jax.ops.segment_sum(jnp.where(ok[:, None], e, 0.0), jnp.where(ok, lab, n_cls),
                              num_segments=n_cls + 1)[:n_cls]
    seg = _l2_normalize(seg / jnp.maximum(counts, 1)[:, None].astype(seg.dtype))
    return _l2_normalize(e[index]), drawn, seg, counts > 0  # [C,K,D], [C,K], [C,D], [C]

  pix, pix_ok, seg, seg_ok = jax.vmap(per_image)(keys, emb, flat_labels, valid)
  pix, pix_ok, seg, seg_ok = (sampling.gather_across_devices(x, axis_name)
                              for x in (pix, pix_ok, seg, seg_ok))
  pq, pp, pc = _enqueue(bank.pixel_queue, bank.pixel_ptr, bank.pixel_count, pix, pix_ok)
  sq, sp, sc = _enqueue(bank.segment_queue, bank.segment_ptr, bank.segment_count, seg[:, :, None],
                        seg_ok[:, :, None])
  return MemoryBank(pq, sq, pp, sp, pc, sc)


def memory_bank_contrast(bank: MemoryBank, key: Array | None = None,
                         samples_per_class: int | None = None) -> tuple[Array, Array, Array]:
  """The bank as a contrast set for `pixel_contrastive_loss`.

  Returns (embeddings [R, D], labels int32 [R], valid bool [R]). With samples_per_class None all
  rows of both queues are returned (R = 2 C T), valid iff written. Otherwise, per class and queue,
  `samples_per_class` (n) written rows are drawn uniformly without replacement with `key`
  (R = 2 C n; fewer written rows -> the rest masked). An empty bank gives an all-False mask, so a
  loss against it alone is the documented masked result 0.0.
  """
  n_cls, size, dim = bank.pixel_queue.shape
  queues = (bank.pixel_queue, bank.segment_queue)
  written = [jnp.arange(size)[None, :] < count[:, None]
             for count in (bank.pixel_count, bank.segment_count)]  # [C, T] each
  if samples_per_class is not None:
    if key is None:
      raise ValueError('memory_bank_contrast needs a PRNG key to draw samples_per_class rows')
    n = min(int(samples_per_class), size)
    drawn_queues, drawn_written = [], []
    for k, queue, ok in zip(jax.random.split(key), queues, written):  # no [C, 2, T, D] copy
      score, rows = jax.lax.top_k(jnp.where(ok, jax.random.uniform(k, ok.shape), -1.0), n)
      drawn_queues.append(jnp.take_along_axis(queue, rows[..., None], axis=1))  # [C, n, D]
      drawn_written.append(score >= 0.0)
    queues, written = drawn_queues, drawn_written
  queues, written = jnp.stack(queues, axis=1), jnp.stack(written, axis=1)  # [C, 2, R, D], [C, 2, R]
  labels = jnp.broadcast_to(jnp.arange(n_cls, dtype=jnp.int32)[:, None, None], written.shape)
  return queues.reshape(-1, dim), labels.reshape(-1), written.reshape(-1)

