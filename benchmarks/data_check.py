"""Times the start-up data check (`PairedFileSource.check`) on a folder of N synthetic examples.

  python benchmarks/data_check.py --n=2000 --size=256

Prints seconds per 1000 examples for headers only (check_labels='none'), the default sample of
200 label maps, and every label map ('all'). The folder is written to a temporary directory.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ecgan_jax.data import sources  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--n', type=int, default=2000)
  parser.add_argument('--size', type=int, default=256)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as root:
    os.makedirs(f'{root}/images'), os.makedirs(f'{root}/labels')
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    for i in range(args.n):
      Image.fromarray(image).save(f'{root}/images/{i:06d}.jpg', quality=90)
      label = np.repeat(np.repeat(rng.integers(0, 150, (args.size // 16,) * 2).astype(np.uint8),
                                  16, 0), 16, 1)
      Image.fromarray(label).save(f'{root}/labels/{i:06d}.png')
    t = time.perf_counter()
    src = sources.folder_source(root, 'train', 150)
    pair = time.perf_counter() - t
    print(f'{args.n} examples at {args.size}x{args.size}: listing + pairing '
          f'{1000 * pair / args.n:.3f} s per 1000')
    for mode in ('none', 'sample', 'all'):
      t = time.perf_counter()
      bad = src.check(mode, 200)
      dt = time.perf_counter() - t
      assert not bad, bad[:3]
      print(f"check_labels='{mode}': {dt:.2f} s = {1000 * dt / args.n:.2f} s per 1000 examples")


if __name__ == '__main__':
  main()
