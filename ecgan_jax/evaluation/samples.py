"""Pictures of generated images: label colouring, sample grids, PNG files and the HTML results page.

Everything runs on the host with numpy; used by the training loop (sample grids) and by
`evaluation.runner` (per-image PNGs with the label maps' file stems and index.html, laid out as
SPADE's results page: label | real | I'' per row).
"""
from __future__ import annotations

import html
import os
from typing import Sequence

import numpy as np

GRID_COLUMNS = ('label', 'real edge', "I'_e", "I'", 'I_g', "I''", 'real')


def label_palette(num_classes: int, seed: int = 0) -> np.ndarray:
  """[num_classes, 3] uint8 colours: a fixed pseudo-random palette (class 0 black)."""
  rng = np.random.default_rng(seed)
  palette = rng.integers(40, 256, size=(num_classes, 3), dtype=np.int64).astype(np.uint8)
  palette[0] = 0
  return palette


def colorize_labels(label: np.ndarray, num_classes: int) -> np.ndarray:
  """label int [..., H, W] -> uint8 RGB [..., H, W, 3]."""
  palette = label_palette(max(int(num_classes), 1))
  return palette[np.clip(np.asarray(label), 0, len(palette) - 1)]


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [-1, 1] [..., H, W, C] (C = 1 or 3) -> uint8 RGB [..., H, W, 3]."""
  x = np.asarray(image, np.float32)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(columns: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """Tiles equal-shaped uint8 [N, H, W, 3] arrays: one row per example, one column per array.

  Returns uint8 [N*(H+pad)+pad, len(columns)*(W+pad)+pad, 3] on a white background.
  """
  n, h, w, _ = columns[0].shape
  for c in columns:
    if c.shape != (n, h, w, 3):
      raise ValueError(f'grid column of shape {c.shape} does not match {(n, h, w, 3)}')
  grid = np.full((n * (h + pad) + pad, len(columns) * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    for j, c in enumerate(columns):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = c[i]
  return grid


def sample_grid(label: np.ndarray, real_edge: np.ndarray | None, fake_edge: np.ndarray | None,
                coarse: np.ndarray, final: np.ndarray, real: np.ndarray,
                num_classes: int, class_image: np.ndarray | None = None) -> np.ndarray:
  """The training sample grid (GRID_COLUMNS): colourised label | real edge | I'_e | I' | I_g |
  I'' | real.

  label [N, H, W] int; edges [N, H, W, 1 or 3] in [-1, 1] and the class-specific image I_g
  [N, H, W, 3] (None: a grey column, e.g. ablations without G_e / G_c); images [N, H, W, 3] in
  [-1, 1]. Returns uint8 [rows, cols, 3].
  """
  grey = np.full(np.shape(real)[:3] + (3,), 128, np.uint8)
  cols = [colorize_labels(label, num_classes),
          grey if real_edge is None else to_uint8(real_edge),
          grey if fake_edge is None else to_uint8(fake_edge),
          to_uint8(coarse), grey if class_image is None else to_uint8(class_image),
          to_uint8(final), to_uint8(real)]
  return make_grid(cols)


def save_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(image).save(path)


def save_pngs(folder: str, stems: Sequence[str], images: np.ndarray) -> list[str]:
  """Writes uint8 [N, H, W, 3] images as folder/<stem>.png; returns the paths."""
  paths = []
  for stem, image in zip(stems, images):
    path = os.path.join(folder, f'{stem}.png')
    save_png(path, image)
    paths.append(path)
  return paths


def write_results_page(path: str, title: str, rows: Sequence[dict[str, str]],
                       columns: Sequence[str] = ('label', 'real', "I''"),
                       metrics: dict[str, float] | None = None) -> str:
  """An HTML page with one row per example and one image per column (paths relative to the page),
  the metrics table on top; returns the path. rows: [{'name': stem, column: relative path}]."""
  esc = html.escape
  lines = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">', f'<title>{esc(title)}</title>',
           '<style>body{font-family:sans-serif} td{padding:2px;text-align:center} '
           'img{image-rendering:pixelated;max-width:320px}</style></head><body>',
           f'<h1>{esc(title)}</h1>']
  if metrics:
    lines.append('<table border="1"><tr><th>metric</th><th>value</th></tr>')
    lines += [f'<tr><td>{esc(k)}</td><td>{v:.4f}</td></tr>' for k, v in metrics.items()]
    lines.append('</table><br>')
  lines.append('<table><tr><th>name</th>' + ''.join(f'<th>{esc(c)}</th>' for c in columns)
               + '</tr>')
  for row in rows:
    cells = ''.join(f'<td><img src="{esc(row[c])}" alt="{esc(c)}"></td>' if c in row else '<td></td>'
                    for c in columns)
    lines.append(f'<tr><td>{esc(row["name"])}</td>{cells}</tr>')
  lines += ['</table>', '</body></html>']
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path
