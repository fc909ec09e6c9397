"""Sample grids, label colouring and the HTML results page."""
import os

import numpy as np

from ecgan_jax.evaluation import samples


def test_sample_grid_tiles_label_edges_and_images():
  n, h, w = 2, 8, 6
  label = np.arange(n * h * w).reshape(n, h, w) % 3
  edge = np.where(np.arange(h * w).reshape(1, h, w, 1) % 2, 1.0, -1.0).repeat(n, 0)
  img = np.zeros((n, h, w, 3), np.float32)
  grid = samples.sample_grid(label, edge, None, img, img + 1.0, img - 1.0, 3, class_image=img + 0.5)
  assert grid.shape == (n * (h + 2) + 2, 7 * (w + 2) + 2, 3) and grid.dtype == np.uint8
  tile = lambda i, j: grid[2 + i * (h + 2):2 + i * (h + 2) + h, 2 + j * (w + 2):2 + j * (w + 2) + w]
  np.testing.assert_array_equal(tile(0, 0), samples.colorize_labels(label[0], 3))
  assert set(np.unique(tile(1, 1))) == {0, 255}  # edges in black/white
  assert np.all(tile(0, 2) == 128)  # no I'_e (ablation B1): grey
  assert np.all(tile(0, 4) == 191)  # I_g (0.5 -> 191)
  assert np.all(tile(0, 5) == 255) and np.all(tile(0, 6) == 0)
  no_class = samples.sample_grid(label, edge, edge, img, img, img, 3)  # ablations without G_c
  assert np.all(no_class[2:2 + h, 2 + 4 * (w + 2):2 + 4 * (w + 2) + w] == 128)


def test_results_page_has_one_row_per_example_with_label_real_and_generated(tmp_path):
  images = np.zeros((2, 4, 4, 3), np.uint8)
  folder = str(tmp_path / 'eval')
  paths = samples.save_pngs(os.path.join(folder, 'images'), ['a', 'b<c'], images)
  assert [os.path.basename(p) for p in paths] == ['a.png', 'b<c.png'] and all(map(os.path.isfile, paths))
  rows = [{'name': s, 'label': f'labels/{s}.png', 'real': f'real/{s}.png', "I''": f'images/{s}.png'}
          for s in ('a', 'b<c')]
  page = samples.write_results_page(os.path.join(folder, 'index.html'), 'step 4', rows,
                                    metrics={'fid': 12.5})
  text = open(page).read()
  assert text.count('<tr><td>') == 2 + 1  # two examples + one metric
  assert 'images/b&lt;c.png' in text and '12.5000' in text
  assert text.index('labels/a.png') < text.index('real/a.png') < text.index('images/a.png')
