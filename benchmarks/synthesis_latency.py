"""Latency of one synthesized image (the web demo's request) at a dataset's size.

  python benchmarks/synthesis_latency.py --config=configs/synthetic.py
  python benchmarks/synthesis_latency.py --config=configs/ade20k.py   # 256x256, ngf 64

Builds the generator of the config with random weights (no checkpoint needed: latency does not
depend on the weights), wraps it in the same `inference.Synthesizer` that `ecgan_jax.load`
returns, compiles once, then times N single-image calls (label map in, I'' / I'_e numpy out, i.e.
including host transfers). Prints compile time and the median / p90 per image.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax import configuration, inference  # noqa: E402
from ecgan_jax.training import setup, state as state_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/synthetic.py', 'Config file.')
_N = flags.DEFINE_integer('n', 10, 'Timed calls.')


def main(_):
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  config = _CONFIG.value
  models = setup.build_models(config, None)
  h, w = configuration.image_size(config)
  sem = np.zeros((1, h, w, configuration.semantic_nc(config)), np.float32)
  z = (np.zeros((1, int(config.model.z_dim)), np.float32)
       if config.model.multimodal != 'none' else None)
  params, other = jax.jit(
      lambda k: state_lib.init_module(models.generator, k, sem, z, train=False))(
          jax.random.PRNGKey(0))
  all_params, all_state = {'generator': params}, {'generator': other}
  if config.model.multimodal == 'vae':
    image = np.zeros((1, h, w, 3), np.float32)
    all_params['style_encoder'], all_state['style_encoder'] = jax.jit(
        lambda k: state_lib.init_module(models.style_encoder, k, image, train=False))(
            jax.random.PRNGKey(1))
  synth = inference.Synthesizer(config, all_params, all_state, 0)
  label = np.random.default_rng(0).integers(0, synth.num_classes, (1, h, w)).astype(np.int32)
  t = time.perf_counter()
  synth(label)
  compile_s = time.perf_counter() - t
  times = []
  for i in range(_N.value):
    t = time.perf_counter()
    synth(label, seed=i)
    times.append(time.perf_counter() - t)
  print(f'{config.dataset.name} {h}x{w}, ngf {config.model.ngf}, '
        f'{state_lib.count_params(params):,} generator params, backend {jax.default_backend()} '
        f'({len(synth.devices)} device(s)): compile {compile_s:.1f} s, per image median '
        f'{np.median(times) * 1e3:.0f} ms, p90 {np.percentile(times, 90) * 1e3:.0f} ms')


if __name__ == '__main__':
  app.run(main)
