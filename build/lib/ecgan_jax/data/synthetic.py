"""Procedural outdoor scenes: the built-in dataset (no download) of the demo and the test suite.

Each scene has a horizon, sky, grass, a road in perspective, optional water, buildings with window
grids and trees, each class drawn with its own texture (gradients, noise, stripes, ripples, windows)
so that region boundaries and textures give meaningful Canny edges. A scene is a pure function of
(seed, split, index, height, width): the dataset is deterministic, random-access, any resolution,
sized or (practically) infinite.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

CLASS_NAMES = ('sky', 'grass', 'road', 'building', 'water', 'tree')
SKY, GRASS, ROAD, BUILDING, WATER, TREE = range(len(CLASS_NAMES))
NUM_CLASSES = len(CLASS_NAMES)
SPLIT_IDS = {'train': 0, 'val': 1}
INFINITE = sys.maxsize


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
  """Value noise in [0, 1], float32 [H, W], with features about `cell` pixels wide."""
  grid = rng.random((h // cell + 2, w // cell + 2), dtype=np.float32)
  return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def render_scene(rng: np.random.Generator, height: int, width: int,
                 with_instances: bool = False) -> dict[str, np.ndarray]:
  """Draws one scene.

  Returns:
    {'image': uint8 [H, W, 3] RGB, 'label': uint8 [H, W] in [0, 6)} and, if `with_instances`,
    'instance': int32 [H, W] (class * 1000 + object number; stuff classes have object 0).
  """
  h, w = height, width
  ys = np.arange(h, dtype=np.float32)[:, None]
  xs = np.arange(w, dtype=np.float32)[None, :]
  horizon = rng.uniform(0.3, 0.55) * h
  label = np.where(ys < horizon, SKY, GRASS).astype(np.uint8) * np.ones((1, w), np.uint8)
  instance = np.zeros((h, w), np.int32) if with_instances else None

  # Water: an ellipse on the ground.
  if rng.random() < 0.6:
    cy = rng.uniform(horizon + 0.15 * (h - horizon), h)
    cx, ry, rx = rng.uniform(0, w), rng.uniform(0.08, 0.2) * h, rng.uniform(0.15, 0.4) * w
    water = (((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1.0) & (ys > horizon + 1)
    label[water] = WATER
  # Road: a trapezoid narrowing towards a vanishing point on the horizon.
  x_far, x_near = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.8) * w
  half_near = rng.uniform(0.15, 0.3) * w
  t = np.clip((ys - horizon) / max(h - horizon, 1.0), 0.0, 1.0)
  centre, half = x_far + (x_near - x_far) * t, 0.01 * w + (half_near - 0.01 * w) * t
  road = (np.abs(xs - centre) < half) & (ys >= horizon)
  label[road] = ROAD
  # Buildings standing on the horizon.
  num_buildings = int(rng.integers(1, 4))
  for k in range(num_buildings):
    x0 = rng.uniform(-0.1, 0.9) * w
    bw, bh = rng.uniform(0.12, 0.3) * w, rng.uniform(0.15, 0.8) * horizon
    y0, y1 = int(max(horizon - bh, 0)), int(min(horizon + 0.02 * h, h))
    xa, xb = int(max(x0, 0)), int(min(x0 + bw, w))
    label[y0:y1, xa:xb] = BUILDING
    if instance is not None:
      instance[y0:y1, xa:xb] = BUILDING * 1000 + k + 1
  # Trees: a trunk and a round crown, drawn last so that they occlude.
  num_trees = int(rng.integers(1, 5))
  tree_mask = np.zeros((h, w), bool)
  trunk_mask = np.zeros((h, w), bool)
  for k in range(num_trees):
    tx, r = rng.uniform(0, w), rng.uniform(0.05, 0.12) * min(h, w)
    base = rng.uniform(horizon, h)
    cy = base - 2.5 * r
    ya, yb = max(int(cy - r), 0), min(int(base) + 1, h)  # bounding box of the tree
    xa, xb = max(int(tx - r), 0), min(int(tx + r) + 1, w)
    if ya >= yb or xa >= xb:
      continue
    by, bx, box = ys[ya:yb], xs[:, xa:xb], (slice(ya, yb), slice(xa, xb))
    crown = (by - cy) ** 2 + (bx - tx) ** 2 < r * r
    trunk = (np.abs(bx - tx) < max(r * 0.2, 0.6)) & (by > cy) & (by < base)
    obj = crown | trunk
    tree_mask[box] |= obj
    trunk_mask[box] = (trunk_mask[box] | trunk) & ~crown
    label[box][obj] = TREE
    if instance is not None:
      instance[box][obj] = TREE * 1000 + k + 1
  if instance is not None:
    stuff = (label != BUILDING) & (label != TREE)
    instance[stuff] = label[stuff].astype(np.int32) * 1000

  # Textures, one per class, blended by the label map.
  jitter = rng.uniform(-0.08, 0.08, size=(NUM_CLASSES, 3)).astype(np.float32)
  fine = rng.random((h, w), dtype=np.float32)
  coarse = _smooth_noise(rng, h, w, max(2, min(h, w) // 8))
  grad = (ys / max(horizon, 1.0)).clip(0, 1)
  sky = np.stack([0.35 + 0.3 * grad, 0.55 + 0.25 * grad, 0.95 - 0.05 * grad], -1)
  sky = sky + 0.15 * (coarse[..., None] > 0.65) * (coarse[..., None] - 0.65) * 4  # clouds
  grass = np.array([0.2, 0.55, 0.15], np.float32) * (0.75 + 0.5 * fine[..., None])
  road = np.array([0.22, 0.22, 0.25], np.float32) * (0.85 + 0.3 * fine[..., None])
  dash = (np.abs(xs - centre) < 0.08 * half + 0.3) & ((ys * 0.25 + 0.0).astype(np.int32) % 3 == 0)
  road = np.where(dash[..., None], np.float32(0.9), road)
  period_y, period_x = max(3, h // 16), max(3, w // 20)
  windows = ((ys.astype(np.int32) % period_y) < period_y // 2) & (
      (xs.astype(np.int32) % period_x) < period_x // 2)
  tone = rng.choice(np.array([[0.55, 0.3, 0.22], [0.6, 0.6, 0.62], [0.8, 0.72, 0.55]],
                             np.float32))
  building = np.where(windows[..., None], np.float32(0.12), tone * (0.9 + 0.2 * fine[..., None]))
  ripple = 0.5 + 0.5 * np.sin(ys * 1.3 + 2.0 * np.sin(xs * 0.15))
  water = np.array([0.05, 0.2, 0.5], np.float32) + 0.12 * ripple[..., None]
  tree = np.array([0.08, 0.3, 0.08], np.float32) * (0.6 + 0.8 * coarse[..., None])
  tree = np.where((tree_mask & (coarse > 0.8))[..., None], np.float32(0.05), tree)
  tree = np.where(trunk_mask[..., None], np.array([0.35, 0.22, 0.1], np.float32), tree)
  rgb = np.empty((h, w, 3), np.float32)
  for c, texture in enumerate((sky, grass, road, building, water, tree)):
    mask = label == c
    if mask.any():
      rgb[mask] = np.broadcast_to(texture, (h, w, 3))[mask] + jitter[c]
  out = {'image': np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), 'label': label}
  if instance is not None:
    out['instance'] = instance
  return out


class SyntheticScenes:
  """grain random-access source of procedural scenes.

  `source[i]` -> {'key': str, 'image': uint8 [H, W, 3], 'label': uint8 [H, W] in [0, 6)
  (+ 'instance' int32 [H, W] if `with_instances`)}; a pure function of (seed, split, i).
  """

  name = 'synthetic'

  def __init__(self, height: int, width: int, size: int | None = 512, seed: int = 0,
               split: str = 'train', with_instances: bool = False):
    if split not in SPLIT_IDS:
      raise ValueError(f'Unknown split {split!r}: expected one of {list(SPLIT_IDS)}')
    self.height, self.width, self.seed, self.split = int(height), int(width), int(seed), split
    self.size = INFINITE if size is None else int(size)
    self.with_instances = with_instances
    self.has_instances = True

  def __len__(self) -> int:
    return self.size

  def __repr__(self) -> str:
    return (f'SyntheticScenes(height={self.height}, width={self.width}, size={self.size}, '
            f'seed={self.seed}, split={self.split!r}, with_instances={self.with_instances})')

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.size:
      raise IndexError(f'index {index} out of range for {self!r}')
    rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], int(index)])
    out = render_scene(rng, self.height, self.width, self.with_instances)
    out['key'] = f'synthetic/{self.split}/{index}'
    return out
