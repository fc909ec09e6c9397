"""Tiny dataset trees in each shipped layout, written by the tests themselves.

Images are random noise (so every crop is unique) with a per-example constant added, and label maps
are random blocks of raw ids, so that tests can check pairing by name and label mapping exactly.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

H, W = 24, 32


def save(path: str, array: np.ndarray, mode: str | None = None) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
  return path


def noise_image(seed: int, h: int = H, w: int = W) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def block_ids(seed: int, values: list[int], h: int = H, w: int = W) -> np.ndarray:
  """Raw id map of 4x4-pixel blocks drawn from `values` (uint8 [h, w])."""
  rng = np.random.default_rng(1000 + seed)
  blocks = rng.choice(np.asarray(values, np.uint8), size=(h // 4 + 1, w // 4 + 1))
  return np.repeat(np.repeat(blocks, 4, 0), 4, 1)[:h, :w]


def ade20k(root: str, n: int = 3, split: str = 'training') -> dict[str, np.ndarray]:
  """ADEChallengeData2016 with raw ids 0..150; returns key -> raw label."""
  base = os.path.join(root, 'ADEChallengeData2016')
  raws = {}
  for i in range(n):
    key = f'ADE_{"train" if split == "training" else "val"}_{i + 1:08d}'
    raws[key] = block_ids(i, [0, 1, 2, 77, 150])
    save(f'{base}/images/{split}/{key}.jpg', noise_image(i))
    save(f'{base}/annotations/{split}/{key}.png', raws[key])
  return raws


def cityscapes(root: str, n: int = 3, split: str = 'train', h: int = H,
               w: int = W) -> dict[str, np.ndarray]:
  raws = {}
  for i in range(n):
    city = ['aachen', 'bochum'][i % 2]
    key = f'{city}/{city}_{i:06d}_000019'
    raws[key] = block_ids(i, [0, 7, 26, 33, 255], h, w)
    stem = key.split('/')[1]
    save(f'{root}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png', noise_image(i, h, w))
    save(f'{root}/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png', raws[key])
    inst = raws[key].astype(np.int32) * 100 + np.arange(w)[None, :] // 8
    save(f'{root}/gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png', inst.astype(np.uint16))
    save(f'{root}/gtFine/{split}/{city}/{stem}_gtFine_color.png', noise_image(99, h, w))
  return raws


def coco_stuff(root: str, n: int = 3, split: str = 'train2017',
               instances: bool = True) -> dict[str, np.ndarray]:
  raws = {}
  for i in range(n):
    key = f'{i * 37 + 9:012d}'
    raws[key] = block_ids(i, [0, 5, 181, 255])
    save(f'{root}/{split}/{key}.jpg', noise_image(i))
    save(f'{root}/stuffthingmaps_trainval2017/{split}/{key}.png', raws[key])
    if instances:
      save(f'{root}/{split[:-4]}_inst/{key}.png', block_ids(50 + i, [0, 1, 2, 3]))
  return raws


def celebamask_hq(root: str, ids=(0, 1, 28001)) -> dict[str, dict[str, np.ndarray]]:
  """Images 2x the masks' size (as shipped: 1024 vs 512); returns id -> part -> mask."""
  parts = {}
  for i in ids:
    save(f'{root}/CelebA-HQ-img/{i}.jpg', noise_image(i, 2 * H, 2 * W))
    parts[str(i)] = {}
    for j, part in enumerate(['skin', 'hair', 'l_eye']):
      m = np.zeros((H, W), np.uint8)
      m[j * 4:j * 4 + 12, j * 6:j * 6 + 14] = 255
      parts[str(i)][part] = m
      save(f'{root}/CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png', m)
  return parts


def folder(root: str, n: int = 4, values=(0, 1, 2, 3), split: str | None = None,
           h: int = H, w: int = W) -> dict[str, np.ndarray]:
  raws = {}
  sub = f'/{split}' if split else ''
  for i in range(n):
    key = f'scene_{(n - i) * 3}'  # names whose sort order differs from creation order
    raws[key] = block_ids(i, list(values), h, w)
    save(f'{root}/images{sub}/{key}.png', noise_image(i, h, w))
    save(f'{root}/labels{sub}/{key}.png', raws[key])
  return raws


# Defects a user's folder dataset may hold: case -> what the error must name.
BAD_CASES = ('truncated_image', 'garbage_image', 'label_out_of_range', 'rgb_label',
             'size_mismatch', 'missing_label', 'truncated_label')


def folder_with_defect(root: str, case: str, n: int = 6) -> str:
  """A `folder` dataset (label_nc=4) of n examples where exactly one example has defect `case`;
  returns the path of the bad file (the one the error must name)."""
  folder(root, n=n)
  key = 'scene_6'
  image, label = f'{root}/images/{key}.png', f'{root}/labels/{key}.png'
  if case == 'truncated_image':
    data = open(image, 'rb').read()
    open(image, 'wb').write(data[:len(data) // 2])
    return image
  if case == 'truncated_label':
    data = open(label, 'rb').read()
    open(label, 'wb').write(data[:len(data) - 20])
    return label
  if case == 'garbage_image':
    open(image, 'wb').write(b'not an image at all')
    return image
  if case == 'label_out_of_range':
    save(label, block_ids(7, [0, 1, 9]))
    return label
  if case == 'rgb_label':
    save(label, noise_image(5))
    return label
  if case == 'size_mismatch':
    save(label, np.zeros((H, W + 2), np.uint8))
    return label
  if case == 'missing_label':
    os.remove(label)
    return image
  raise ValueError(f'unknown case {case!r}')
