"""Throughput and memory of the evaluation networks, one device, random weights.

  python benchmarks/evaluation.py                          # synthetic tiny config, batch 4 (CPU)
  python benchmarks/evaluation.py --config=ade20k --batch 32 --repeats 5     # on a GPU

Prints one line per stage: compile time, median time per batch, images/s, the compiled function's
temporary memory (XLA memory analysis) and, on a GPU, the device's peak bytes in use. Stages:
  generation   the generator of --config (EMA inference call, default widths unless --tiny)
  inception    FID Inception-v3 pool3 features (images resized to 299)
  segmenter    SegFormer-b0 logits + resize + argmax at the image size
  lpips        LPIPS-AlexNet between two batches of images
  all          the four in sequence (images/s of a whole evaluation batch)
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax import configuration  # noqa: E402
from ecgan_jax.evaluation import evaluators  # noqa: E402
from ecgan_jax.evaluation.runner import make_generate_fn  # noqa: E402
from ecgan_jax.models import build_generator, inception, lpips, segformer  # noqa: E402

MIB = 2.0 ** 20


def measure(name: str, fn, args, batch: int, repeats: int) -> None:
  compiled, compile_s, step = timing.compile_and_time(fn, args, repeats)
  mem = compiled.memory_analysis()
  peak = timing.peak_bytes()
  peak_s = '' if peak is None else f'  device peak {peak / MIB:8.1f} MiB'
  print(f'{name:12s} compile {compile_s:6.1f} s  batch {step * 1e3:9.1f} ms  '
        f'{batch / step:8.2f} images/s  temp {mem.temp_size_in_bytes / MIB:8.1f} MiB{peak_s}',
        flush=True)


def main() -> None:
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--config', default='synthetic', help='configs/<name>.py')
  p.add_argument('--tiny', action='store_true', default=None, help='tiny generator widths')
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--repeats', type=int, default=3)
  a = p.parse_args()
  tiny = a.tiny if a.tiny is not None else a.config == 'synthetic'
  config = importlib.import_module(f'configs.{a.config}').get_config('tiny' if tiny else None)
  h, w = configuration.image_size(config)
  n, b = configuration.num_classes(config), a.batch
  print(f'{jax.devices()[0].platform} x1, config {a.config}{" tiny" if tiny else ""}, {h}x{w}, '
        f'batch {b}', flush=True)
  key = jax.random.PRNGKey(0)
  label = jax.random.randint(key, (b, h, w), 0, n)
  images = jax.random.uniform(key, (b, h, w, 3), minval=-1, maxval=1)

  sem = jnp.zeros((1, h, w, configuration.semantic_nc(config)))
  g_vars = jax.jit(lambda k: build_generator(config).init({'params': k, 'noise': k}, sem, None,
                                                          train=True))(key)
  generate = make_generate_fn(config)
  gen = lambda v, l, k: generate(v, l, None, k)['image']  # noqa: E731
  inc = inception.FIDInceptionV3()
  inc_vars = jax.jit(inc.init)(key, jnp.zeros((1, 299, 299, 3)))
  seg = segformer.SegFormer('b0', num_labels=n, normalize_input=True)
  seg_vars = jax.jit(seg.init)(key, jnp.zeros((1, 64, 64, 3)))
  seg_apply = lambda v, x: seg.apply(v, x)  # noqa: E731
  lp = lpips.LPIPS('alex')
  lp_vars = jax.jit(lp.init)(key, images[:1], images[:1])

  measure('generation', gen, (g_vars, label, key), b, a.repeats)
  measure('inception', inc.apply, (inc_vars, images), b, a.repeats)
  measure('segmenter', lambda v, x: evaluators.segment(seg_apply, v, x), (seg_vars, images), b,
          a.repeats)
  measure('lpips', lp.apply, (lp_vars, images, images[::-1]), b, a.repeats)

  def everything(gv, iv, sv, lv, l, k):
    fake = gen(gv, l, k)
    return (inc.apply(iv, fake), evaluators.segment(seg_apply, sv, fake),
            lp.apply(lv, fake, fake[::-1]))
  measure('all', everything, (g_vars, inc_vars, seg_vars, lp_vars, label, key), b, a.repeats)


if __name__ == '__main__':
  main()
