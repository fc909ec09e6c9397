"""Input-pipeline throughput: images per second at 256x256 with Canny edges, 0 and 2 workers.

  python benchmarks/input_pipeline.py                  # synthetic scenes and a JPEG folder
  python benchmarks/input_pipeline.py --workers=0,2,4 --batches=20 --data=folder

`synthetic` renders scenes at 286x286 (ADE20K-style resize_and_crop to 256); `folder` writes
320x320 JPEG scenes with PNG label maps to a temporary folder first and measures decode + resize +
Canny + crop/flip + batching. The first batch (worker start-up) is not timed.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from configs import default  # noqa: E402
from ecgan_jax.data import pipeline, synthetic  # noqa: E402


def make_config(data: str, root: str | None, workers: int, batch: int):
  c = default.get_config()
  c.dataset.name = data
  c.dataset.root = root
  c.dataset.label_nc = 6
  c.dataset.preprocess_mode = 'resize_and_crop'
  c.dataset.load_size = 286
  c.dataset.crop_size = 256
  c.dataset.synthetic_size = 100_000
  c.dataset.num_workers = workers
  c.train.batch_size = batch
  return c


def write_folder(root: str, n: int) -> None:
  src = synthetic.SyntheticScenes(320, 320, size=n, seed=7)
  os.makedirs(os.path.join(root, 'images'))
  os.makedirs(os.path.join(root, 'labels'))
  for i in range(n):
    ex = src[i]
    Image.fromarray(ex['image']).save(os.path.join(root, 'images', f'{i:05d}.jpg'), quality=90)
    Image.fromarray(ex['label']).save(os.path.join(root, 'labels', f'{i:05d}.png'))


def measure(config, batches: int) -> float:
  it = pipeline.make_train_iterator(config, num_local_devices=1, process_index=0, process_count=1)
  next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  elapsed = time.perf_counter() - t
  if hasattr(it, 'close'):
    it.close()
  return batches * config.train.batch_size / elapsed


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data', default='synthetic,folder')
  p.add_argument('--workers', default='0,2')
  p.add_argument('--batches', type=int, default=10)
  p.add_argument('--batch_size', type=int, default=8)
  p.add_argument('--folder_images', type=int, default=128)
  args = p.parse_args()
  print(f'cpu cores: {os.cpu_count()}; 256x256 crops from 286x286, Canny on every image')
  with tempfile.TemporaryDirectory() as tmp:
    for data in args.data.split(','):
      root = None
      if data == 'folder':
        root = os.path.join(tmp, 'folder')
        write_folder(root, args.folder_images)
      for w in (int(x) for x in args.workers.split(',')):
        rate = measure(make_config(data, root, w, args.batch_size), args.batches)
        print(f'{data:9s} workers={w}: {rate:7.1f} images/s')


if __name__ == '__main__':
  main()
