"""Static-shape helpers shared by the losses: label masks and downsampling, per-class random pixel
choice, anchor sampling across devices, and chunked evaluation with bounded peak memory.

Everything here is jit/vmap/pmap safe: no boolean indexing, no data-dependent shapes. Pixels that
cannot be used (label out of range, the ignore label, padding) are carried along with a False mask.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def check_temperature(temperature: Any) -> None:
  """Raises ValueError at trace time for a non-positive (Python or concrete) temperature."""
  try:
    value = float(temperature)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # a traced temperature cannot be checked here; the caller documents it
  if not value > 0.0:
    raise ValueError(f'temperature must be > 0, got {temperature!r}')


def check_labels(labels: Array, name: str = 'labels') -> None:
  """Raises ValueError unless `labels` has an integer dtype."""
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f'{name} must be an integer array of class ids, got dtype {labels.dtype}')


def valid_label_mask(labels: Array, num_classes: int, ignore_label: int | None = None) -> Array:
  """Bool mask of pixels whose id lies in [0, num_classes) and differs from `ignore_label`.

  Out-of-range ids (e.g. 255, or the appended don't-care id when `num_classes` excludes it) are
  therefore masked, never an error: losses treat them exactly like ignored pixels.
  """
  check_labels(labels)
  valid = (labels >= 0) & (labels < num_classes)
  if ignore_label is not None:
    valid &= labels != ignore_label
  return valid


def downsample_labels(labels: Array, size: tuple[int, int]) -> Array:
  """Nearest-neighbour downsampling of a label map [B, H, W] to [B, h, w] by striding.

  Picks pixel (i * H/h, j * W/w), which is what PyTorch's `F.interpolate(mode='nearest')` picks for
  integer factors. H and W must be multiples of h and w.
  """
  check_labels(labels)
  if labels.ndim != 3:
    raise ValueError(f'labels must be [B, H, W], got shape {labels.shape}')
  big_h, big_w = labels.shape[1:]
  h, w = size
  if h < 1 or w < 1 or big_h % h or big_w % w:
    raise ValueError(f'cannot nearest-downsample a {big_h}x{big_w} label map to {h}x{w}: the '
                     'target size must divide the label size')
  return labels[:, ::big_h // h, ::big_w // w]


def gather_across_devices(x: Array, axis_name: str | None) -> Array:
  """all_gather over `axis_name`, concatenated along axis 0 ([n, ...] -> [devices * n, ...]).

  Identity when `axis_name` is None. The gradient flows back to each device's own slice; with the
  usual `pmean` of gradients this gives exactly the gradient of the loss on the gathered set.
  """
  if axis_name is None:
    return x
  return lax.all_gather(x, axis_name, axis=0, tiled=True)


def device_key(key: Array, axis_name: str | None) -> Array:
  """Folds the device index into `key` in a mapped context (unchanged when axis_name is None)."""
  if axis_name is None:
    return key
  return jax.random.fold_in(key, lax.axis_index(axis_name))


def random_pixels_per_class(key: Array, labels: Array, valid: Array, num_classes: int,
                            k: int) -> tuple[Array, Array, Array]:
  """Draws, for every class, up to `k` distinct pixels uniformly without replacement.

  Args:
    key: PRNG key.
    labels: int [N] class ids.
    valid: bool [N] pixels that may be drawn.
    num_classes: C; classes are 0..C-1 (ids outside that range must be False in `valid`).
    k: static number of draws per class.
  Returns:
    index int32 [C, k] into the N pixels (0 where not drawn), drawn bool [C, k] (False beyond a
    class's pixel count), counts int32 [C] valid pixels per class.

  Method: one sort of the pixels by (class, uniform random key); class c then occupies a contiguous
  run in random order and its first min(count, k) entries are the draw. O(N log N), static shapes.
  """
  n = labels.shape[0]
  cls = jnp.where(valid, labels, num_classes).astype(jnp.int32)
  u = jax.random.uniform(key, (n,))
  _, _, order = lax.sort((cls, u, jnp.arange(n, dtype=jnp.int32)), num_keys=2)
  counts = jax.ops.segment_sum(valid.astype(jnp.int32), cls, num_segments=num_classes + 1)
  counts = counts[:num_classes]
  starts = jnp.cumsum(counts) - counts
  slot = jnp.arange(k, dtype=jnp.int32)
  drawn = slot[None, :] < counts[:, None]
  pos = jnp.where(drawn, starts[:, None] + slot[None, :], 0)
  return order[pos], drawn, counts


class Anchors(NamedTuple):
  """A fixed-size set of pixel embeddings: embeddings [A, D], labels int32 [A], valid bool [A]."""
  embeddings: Array
  labels: Array
  valid: Array


def sample_anchors(key: Array, embeddings: Array, labels: Array, *, num_classes: int,
                   anchors_per_class: int, max_classes: int | None = None,
                   ignore_label: int | None = None, axis_name: str | None = None) -> Anchors:
  """Draws a fixed budget of anchor pixels per class from a batch of embedding maps.

  Args:
    key: PRNG key (folded with the device index when `axis_name` is set).
    embeddings: [B, H, W, D] pixel embeddings.
    labels: int [B, H, W] class ids at the embeddings' resolution (see `downsample_labels`).
    num_classes: C; ids outside [0, C) and `ignore_label` are never drawn.
    anchors_per_class: static draws per class (fewer pixels -> the rest is masked).
    max_classes: static number of classes drawn per device, chosen uniformly among the present
      ones (None: all C classes, absent ones masked).
    ignore_label: id never drawn.
    axis_name: if set, each device draws from its own images and the draws are all_gathered, so
      every replica holds the same set of devices * A anchors from devices * B layouts.
  Returns:
    Anchors with A = min(max_classes, C) * anchors_per_class rows (times the device count when
    gathering); embeddings of masked rows are zero.
  """
  if embeddings.ndim != 4 or labels.shape != embeddings.shape[:3]:
    raise ValueError(f'embeddings must be [B, H, W, D] and labels [B, H, W]; got {embeddings.shape}'
                     f' and {labels.shape}')
  valid = valid_label_mask(labels, num_classes, ignore_label).reshape(-1)
  flat = embeddings.reshape(-1, embeddings.shape[-1])
  key = device_key(key, axis_name)
  k_pix, k_cls = jax.random.split(key)
  index, drawn, counts = random_pixels_per_class(k_pix, labels.reshape(-1), valid, num_classes,
                                                 anchors_per_class)
  n_cls = num_classes if max_classes is None else min(int(max_classes), num_classes)
  if n_cls < num_classes:
    score = jnp.where(counts > 0, jax.random.uniform(k_cls, (num_classes,)), -1.0)
    _, classes = lax.top_k(score, n_cls)
  else:
    classes = jnp.arange(num_classes)
  index, drawn = index[classes], drawn[classes]  # [n_cls, k]
  out_valid = drawn.reshape(-1)
  out = jnp.where(out_valid[:, None], flat[index.reshape(-1)], 0.0).astype(jnp.float32)
  out_labels = jnp.repeat(classes.astype(jnp.int32), anchors_per_class)
  return Anchors(gather_across_devices(out, axis_name),
                 gather_across_devices(out_labels, axis_name),
                 gather_across_devices(out_valid, axis_name))


def chunked_map(fn: Callable[[Any], Any], xs: Any, chunk_size: int | None) -> Any:
  """Applies `fn` to `chunk_size`-row slices of the pytree `xs` (leading axis n) one at a time.

  `fn` maps a pytree of [c, ...] arrays to a pytree of [c, ...] row results. Rows are zero-padded to
  a multiple of `chunk_size` (callers carry a validity mask in `xs`, which pads as False) and the
  padding is cut from the result. Each chunk runs under `jax.checkpoint`, so neither the forward
  nor the backward pass keeps more than one chunk's intermediates: peak memory O(chunk * cols).
  `chunk_size` None or >= n evaluates everything at once.
  """
  n = jax.tree.leaves(xs)[0].shape[0]
  if chunk_size is None or chunk_size >= n:
    return fn(xs)
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
  n_chunks = -(-n // chunk_size)
  pad = n_chunks * chunk_size - n

  def split(x):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((n_chunks, chunk_size) + x.shape[1:])

  out = lax.map(jax.checkpoint(fn), jax.tree.map(split, xs))
  return jax.tree.map(lambda y: y.reshape((n_chunks * chunk_size,) + y.shape[2:])[:n], out)
