"""Where the CPU time of a training step goes: each component alone, forward + backward, with
XLA's flop count (cost analysis of the compiled program), compile time, wall and CPU time.

  python benchmarks/components.py                         # ADE20K labels, 64x64, ngf 16, batch 8
  python benchmarks/components.py --size=256 --ngf=64 --batch=1 --only=D,d_conv

Components: G (generator, all outputs, loss = sum of sines), D (multi-scale discriminator on
[S, image]), VGG (VGG19 features), L (SegFormer-b0 logits), d_conv (D's widest 4x4 stride-1 pad-2
convolution alone, [B, H/8+1, W/8+1, 4 ndf] -> 8 ndf, XLA's convolution against an im2col +
matmul weight gradient). Data are random; parameters random (nothing is trained).
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from configs import ade20k  # noqa: E402
from ecgan_jax import configuration  # noqa: E402
from ecgan_jax.models import semantics as semantics_lib  # noqa: E402
from ecgan_jax.training import setup  # noqa: E402

_SIZE = flags.DEFINE_integer('size', 64, 'Image height = width.')
_NGF = flags.DEFINE_integer('ngf', 16, 'ngf = ndf.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Batch size.')
_ONLY = flags.DEFINE_list('only', ['G', 'D', 'VGG', 'L', 'd_conv'], 'Components to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls after one warm-up.')


def _time(name, fn, *args):
  lowered = jax.jit(fn).lower(*args)
  t = time.time()
  compiled = lowered.compile()
  compile_s = time.time() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  jax.block_until_ready(compiled(*args))
  walls, cpus = [], []
  for _ in range(_REPEATS.value):
    t, c = time.time(), time.process_time()
    jax.block_until_ready(compiled(*args))
    walls.append(time.time() - t)
    cpus.append(time.process_time() - c)
  print(f'{name:28s} {cost.get("flops", 0) / 1e9:9.2f} GFLOP  compile {compile_s:6.1f} s  '
        f'wall min {min(walls):7.3f} s  median {statistics.median(walls):7.3f} s  '
        f'CPU min {min(cpus):7.3f} s', flush=True)


def _grad_of_sum(apply):
  """params, inputs -> gradients of sum(sin(outputs)) w.r.t. params and inputs."""
  def loss(params, *inputs):
    out = apply(params, *inputs)
    return sum(jnp.sum(jnp.sin(x.astype(jnp.float32))) for x in jax.tree.leaves(out)
               if jnp.issubdtype(x.dtype, jnp.floating))
  return jax.grad(loss, argnums=(0, 1))


def conv_xla(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def conv_im2col(x, w):
  """The same convolution as patches [B*Ho*Wo, 16 Cin] @ kernel [16 Cin, Cout]."""
  b, h, wd, c = x.shape
  k = w.shape[0]
  xp = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  ho, wo = h + 4 - k + 1, wd + 4 - k + 1
  cols = [xp[:, i:i + ho, j:j + wo, :] for i in range(k) for j in range(k)]
  patches = jnp.stack(cols, axis=3).reshape(b * ho * wo, k * k * c)
  return (patches @ w.reshape(-1, w.shape[-1])).reshape(b, ho, wo, -1)


def main(argv):
  del argv
  config = ade20k.get_config()
  config.dataset.crop_size = config.dataset.load_size = _SIZE.value
  config.model.ngf = config.model.ndf = _NGF.value
  b, (h, w) = _BATCH.value, configuration.image_size(config)
  print(f'ADE20K labels ({configuration.num_classes(config)} classes), {h}x{w}, ngf=ndf={_NGF.value},'
        f' batch {b}; load average {os.getloadavg()[0]:.1f}; forward + backward unless noted')
  models = setup.build_models(config, None)
  key = jax.random.PRNGKey(0)
  label = jax.random.randint(key, (b, h, w), 0, configuration.num_classes(config))
  sem = semantics_lib.one_hot_semantics(label, configuration.num_classes(config))
  image = jax.random.uniform(key, (b, h, w, 3), minval=-1.0, maxval=1.0)
  only = set(_ONLY.value)
  if 'G' in only:
    v = models.generator.init({'params': key, 'noise': key}, sem[:1], None, train=False)
    apply = lambda p, s: models.generator.apply(  # noqa: E731
        {**v, 'params': p}, s, None, train=False, rngs={'noise': key})
    _time('G', _grad_of_sum(apply), v['params'], sem)
  if 'D' in only:
    v = models.discriminator.init(key, sem[:1], image[:1], train=False)
    apply = lambda p, x: models.discriminator.apply(  # noqa: E731
        {**v, 'params': p}, sem, x, train=False)
    _time('D', _grad_of_sum(apply), v['params'], image)
  if 'VGG' in only:
    v = models.vgg.init(key, image[:1])
    _time('VGG', _grad_of_sum(lambda p, x: models.vgg.apply({'params': p}, x)), v['params'], image)
  if 'L' in only:
    v = models.label_generator.init(key, image[:1], train=False)
    apply = lambda p, x: models.label_generator.apply(  # noqa: E731
        {**v, 'params': p}, x, train=False)
    _time('L (SegFormer-b0)', _grad_of_sum(apply), v['params'], image)
  if 'd_conv' in only:
    cin, cout = min(4 * _NGF.value, 512), min(8 * _NGF.value, 512)
    x = jax.random.normal(key, (3 * b, h // 8 + 1, w // 8 + 1, cin))
    kern = jax.random.normal(key, (4, 4, cin, cout)) * 0.02
    print(f'd_conv: x {tuple(x.shape)} -> {cout} channels, 4x4 stride 1 pad 2')
    for name, conv in (('d_conv XLA', conv_xla), ('d_conv im2col', conv_im2col)):
      _time(name + ' (wgrad only)', jax.grad(lambda k, x: jnp.sum(jnp.sin(conv(x, k)))), kern, x)
      _time(name + ' (fwd+both)', _grad_of_sum(lambda k, x: conv(x, k)), kern, x)


if __name__ == '__main__':
  app.run(main)
