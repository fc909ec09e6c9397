"""Per-example preprocessing, as SPADE/ECGAN do it, split into grain stages.

1. `Prepare` (deterministic, cacheable): resize to the load geometry (image bicubic, label and
   instance ids nearest) and compute the Canny edge map of the resized real image.
2. `RandomCropFlip` (grain random map): one random crop offset and one flip decision applied jointly
   to image, label, edge and instance ids.
3. `Finalize`: image to float32 [-1, 1], edge to {-1, +1}, instance ids to a {0, 1} boundary map.

Geometry (`geometry(config, train)`): resize_and_crop trains on a `load_size` square (SPADE resizes
to load_size x load_size, not by the shorter side) randomly cropped to the image size and evaluates
on the image size directly; fixed resizes to the image size (crop_size x crop_size/aspect_ratio);
none keeps the stored size, which must equal the image size.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from ecgan_jax import configuration
from ecgan_jax.data import edges as edges_lib


class BadExampleError(ValueError):
  """An example cannot be used; the message names the file and what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Sizes in pixels, (height, width): `load` after the deterministic resize (None: keep the
  stored size), `crop` after the random crop (the model's image size)."""
  load: tuple[int, int] | None
  crop: tuple[int, int]
  random_crop: bool
  flip: bool


def geometry(config: Any, train: bool) -> Geometry:
  """The preprocessing geometry of `config.dataset` for training (random) or evaluation (fixed)."""
  d = config.dataset
  crop = configuration.image_size(config)
  if d.preprocess_mode == 'resize_and_crop' and train:
    load = (int(round(d.load_size / float(d.aspect_ratio))), int(d.load_size))
  elif d.preprocess_mode in ('resize_and_crop', 'fixed'):
    load = crop
  else:
    load = None
  return Geometry(load=load, crop=crop, random_crop=train and load not in (None, crop),
                  flip=bool(train and d.flip))


def nearest_indices(n_out: int, n_in: int) -> np.ndarray:
  """Source indices of nearest-neighbour resampling (pixel centres, as PIL's NEAREST)."""
  return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_nearest(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest resize of an id map [H, W] (any integer dtype) to (height, width)."""
  h, w = size
  if ids.shape[:2] == (h, w):
    return ids
  return ids[nearest_indices(h, ids.shape[0])[:, None], nearest_indices(w, ids.shape[1])[None, :]]


def resize_bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bicubic resize (PIL, as SPADE) of uint8 [H, W, 3] to (height, width)."""
  h, w = size
  if image.shape[:2] == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def instance_boundaries(instance: np.ndarray) -> np.ndarray:
  """SPADE's instance edge map: 1 where a 4-neighbour has another instance id.

  Args: instance: int [H, W]. Returns: float32 [H, W, 1] in {0, 1}.
  """
  edge = np.zeros(instance.shape, bool)
  dx = instance[:, 1:] != instance[:, :-1]
  dy = instance[1:, :] != instance[:-1, :]
  edge[:, 1:] |= dx
  edge[:, :-1] |= dx
  edge[1:, :] |= dy
  edge[:-1, :] |= dy
  return edge[..., None].astype(np.float32)


class Prepare:
  """Deterministic stage: resize to the load geometry and add the Canny edge map.

  In: {'key', 'image' uint8 [h, w, 3], 'label' int [h, w] (+ 'instance' int [h, w])}.
  Out: the same at the load geometry (label int32, instance int32) + 'edge' uint8 [H, W] (0/255).
  A None (a skipped bad example) passes through.
  """

  def __init__(self, geom: Geometry, use_instance: bool, edge_cache: edges_lib.EdgeCache | None):
    self.geom, self.use_instance, self.edge_cache = geom, use_instance, edge_cache

  def __repr__(self) -> str:
    return f'Prepare({self.geom}, use_instance={self.use_instance}, cache={self.edge_cache!r})'

  def __call__(self, ex: dict | None) -> dict | None:
    if ex is None:
      return None
    image = ex['image']
    if self.geom.load is None:
      if image.shape[:2] != self.geom.crop:
        raise BadExampleError(
            f'{ex["key"]}: image is {image.shape[0]}x{image.shape[1]} (HxW) but '
            f"preprocess_mode='none' needs exactly {self.geom.crop[0]}x{self.geom.crop[1]}; use "
            "preprocess_mode='fixed' to resize")
      size = self.geom.crop
    else:
      size = self.geom.load
    out = {'key': ex['key'], 'image': resize_bicubic(image, size),
           'label': resize_nearest(ex['label'], size).astype(np.int32)}
    if self.use_instance:
      out['instance'] = resize_nearest(ex['instance'], size).astype(np.int32)
    compute = lambda: edges_lib.canny_edges(out['image'])
    if self.edge_cache is None:
      out['edge'] = compute()
    else:
      name = edges_lib.edge_cache_key(ex['key'], size, ex.get('stamp', ''))
      out['edge'] = self.edge_cache.get_or_compute(name, compute)
    return out


class RandomCropFlip:
  """Joint random crop to `geom.crop` and horizontal flip of every spatial field (grain random map).

  The same offset and flip are applied to 'image', 'label', 'edge' and 'instance'.
  """

  SPATIAL = ('image', 'label', 'edge', 'instance')

  def __init__(self, geom: Geometry):
    self.geom = geom

  def __repr__(self) -> str:
    return f'RandomCropFlip({self.geom})'

  def __call__(self, ex: dict | None, rng: np.random.Generator) -> dict | None:
    if ex is None:
      return None
    h, w = ex['label'].shape
    ch, cw = self.geom.crop
    y = int(rng.integers(0, h - ch + 1)) if self.geom.random_crop else (h - ch) // 2
    x = int(rng.integers(0, w - cw + 1)) if self.geom.random_crop else (w - cw) // 2
    flip = bool(self.geom.flip and rng.random() > 0.5)
    out = dict(ex)
    for k in self.SPATIAL:
      if k in ex:
        v = ex[k][y:y + ch, x:x + cw]
        out[k] = v[:, ::-1] if flip else v
    return out


class Finalize:
  """Converts to the training contract: 'image' float32 [H, W, 3] in [-1, 1], 'label' int32
  [H, W], 'edge' float32 [H, W, 1] in {-1, +1}, 'instance' float32 [H, W, 1] boundary map in
  {0, 1} (if used), 'valid' bool (eval padding flag, if present). Drops the example key unless
  `keep_key` (evaluation: output files are named after the label maps)."""

  def __init__(self, keep_key: bool = False):
    self.keep_key = keep_key

  def __repr__(self) -> str:
    return f'Finalize(keep_key={self.keep_key})' if self.keep_key else 'Finalize()'

  def __call__(self, ex: dict | None) -> dict | None:
    if ex is None:
      return None
    out = {
        'label': np.ascontiguousarray(ex['label'], np.int32),
        'image': np.asarray(ex['image'], np.float32) / np.float32(127.5) - np.float32(1.0),
        'edge': np.where(ex['edge'] > 0, np.float32(1.0), np.float32(-1.0))[..., None],
    }
    if 'instance' in ex:
      out['instance'] = instance_boundaries(ex['instance'])
    if 'valid' in ex:
      out['valid'] = np.bool_(ex['valid'])
    if self.keep_key:
      out['key'] = np.str_(ex.get('key', ''))
    return out


class SplitDevices:
  """Reshapes a batch's leading axis [B, ...] to [num_devices, B / num_devices, ...]."""

  def __init__(self, num_devices: int):
    self.num_devices = int(num_devices)

  def __repr__(self) -> str:
    return f'SplitDevices({self.num_devices})'

  def __call__(self, batch: dict) -> dict:
    return {k: v.reshape((self.num_devices, v.shape[0] // self.num_devices) + v.shape[1:])
            for k, v in batch.items()}
