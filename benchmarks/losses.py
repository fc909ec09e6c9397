"""Time and memory of the expensive losses, so later changes can be compared.

  python benchmarks/losses.py                 # defaults below (about a minute on a 2-core CPU)
  python benchmarks/losses.py --bank-samples 256 --repeats 5   # the training config, on a GPU

Prints one line per case: compile time, median step time (value_and_grad, jitted) and the
compiled functions' temporary memory (XLA memory analysis, forward and forward+backward); on a GPU
also the device's peak bytes in use. Cases:
  similarity_loss on a [1, S, S, 150] probability map (S = 64, 128; labels 4x larger), chunked;
  pixel_contrastive_loss among A = 1k, 4k anchors (D = 128, 150 classes);
  memory_bank_loss of the same anchors against a full 150-class bank (T = 1024, both queues),
    `--bank-samples` rows per class per queue, anchors chunked;
  update_memory_bank with 8 images of 64 x 64 embeddings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax import losses  # noqa: E402

MIB = 2.0 ** 20


def measure(name: str, fn, *args, repeats: int = 3) -> None:
  """Compiles value_and_grad(fn) w.r.t. args[0], runs it `repeats` times, prints one line."""
  fwd = jax.jit(fn).lower(*args).compile().memory_analysis()
  compiled, compile_s, step = timing.compile_and_time(jax.value_and_grad(fn), args, repeats)
  mem = compiled.memory_analysis()
  peak = timing.peak_bytes()
  peak_s = '' if peak is None else f'  device peak {peak / MIB:8.1f} MiB'
  print(f'{name:44s} compile {compile_s:6.2f} s  step {step * 1e3:9.2f} ms  '
        f'temp fwd {fwd.temp_size_in_bytes / MIB:8.1f} MiB  fwd+bwd '
        f'{mem.temp_size_in_bytes / MIB:8.1f} MiB{peak_s}', flush=True)


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def main(argv=None) -> None:
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--sizes', default='64,128', help='probability-map sizes S for similarity_loss')
  p.add_argument('--chunk', type=int, default=1024, help='similarity_loss chunk_size')
  p.add_argument('--anchors', default='1024,4096', help='anchor counts for the contrastive cases')
  p.add_argument('--classes', type=int, default=150)
  p.add_argument('--dim', type=int, default=128)
  p.add_argument('--bank-size', type=int, default=1024)
  p.add_argument('--bank-samples', type=int, default=64,
                 help='bank rows drawn per class per queue (config.loss.bank_negatives: 256)')
  p.add_argument('--anchor-chunk', type=int, default=512)
  p.add_argument('--repeats', type=int, default=3)
  a = p.parse_args(argv)
  print(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}')
  key = jax.random.PRNGKey(0)
  n, d = a.classes, a.dim

  for s in (int(x) for x in a.sizes.split(',')):
    probs = jax.nn.softmax(jax.random.normal(key, (1, s, s, n)), axis=-1)
    labels = jax.random.randint(key, (1, 4 * s, 4 * s), 0, n)
    m = s * s
    measure(f'similarity {s}x{s} (M={m}, MxM {m * m * 4 / MIB:.0f} MiB) chunk {a.chunk}',
            lambda pr, lb: losses.similarity_loss(pr, lb, chunk_size=a.chunk), probs, labels,
            repeats=a.repeats)

  bank = losses.init_memory_bank(n, a.bank_size, d)
  filled = _unit(jax.random.normal(key, bank.pixel_queue.shape))
  full = jnp.full((n,), a.bank_size, jnp.int32)
  bank = bank.replace(pixel_queue=filled, segment_queue=filled[:, ::-1], pixel_count=full,
                      segment_count=full)
  for count in (int(x) for x in a.anchors.split(',')):
    anchors = _unit(jax.random.normal(key, (count, d)))
    labels = jax.random.randint(key, (count,), 0, n)
    measure(f'pixel_contrastive A={count} (in-batch)',
            lambda x, lb: losses.pixel_contrastive_loss(x, lb), anchors, labels, repeats=a.repeats)
    rows = 2 * n * min(a.bank_samples, a.bank_size)
    measure(f'memory_bank_loss A={count} K={rows} chunk {a.anchor_chunk}',
            lambda x, lb, bk: losses.memory_bank_loss(
                x, lb, None, bk, key=key, samples_per_class=a.bank_samples,
                chunk_size=a.anchor_chunk),
            anchors, labels, bank, repeats=a.repeats)

  emb = _unit(jax.random.normal(key, (8, 64, 64, d)))
  seg = jax.random.randint(key, (8, 64, 64), 0, n)
  update = jax.jit(lambda bk, e, lb: losses.update_memory_bank(bk, key, e, lb, pixels_per_class=10))
  jax.block_until_ready(update(bank, emb, seg))
  t0 = time.perf_counter()
  for _ in range(a.repeats):
    jax.block_until_ready(update(bank, emb, seg))
  print(f'{"update_memory_bank 8x64x64, 150 classes, K=10":44s} step '
        f'{(time.perf_counter() - t0) / a.repeats * 1e3:9.2f} ms', flush=True)


if __name__ == '__main__':
  main()
