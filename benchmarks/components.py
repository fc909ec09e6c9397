"""Where the CPU time of a training step goes: each component alone, forward + backward, with
XLA's flop count (cost analysis of the compiled program), compile time, wall and CPU time.

  python benchmarks/components.py                         # ADE20K labels, 64x64, ngf 16, batch 8
  python benchmarks/components.py --size=256 --ngf=64 --batch=1 --only=D,kernel_grad
  python benchmarks/components.py --size=256 --ngf=64 --batch=1 --row=B3 --only=G

--row=B1..B8 builds that ablation row at vs_pytorch.py's geometry (`timing.our_config`: the released
G's widths, VGG off), so G's time per row shows what G_e, G_t and G_s each add to a side-by-side
side; without it the networks are configs/ade20k.py's full model at --size / --ngf.

Components: G (generator, all outputs, loss = sum of sines), D (multi-scale discriminator on
[S, image]), VGG (VGG19 features), L (SegFormer-b0 logits), kernel_grad (a convolution's kernel
gradient alone, XLA:CPU's against per-tap matmuls, at the fixed layer shapes of
KERNEL_GRAD_SHAPES), conv_forward (XLA's forward convolution against per-tap matmuls at those
shapes; not in the default list), onehot (SPADE's shared conv over the one-hot map dense vs gathered, and a
full-resolution SPADE norm with and without the gather), spade_pair (SPADE's gamma and beta convs
as two convolutions against one with both outputs side by side, at the shapes of
SPADE_PAIR_SHAPES; not in the default list), conv_vs_torch (the fused pair's convolution,
forward + input and kernel gradients, in XLA against PyTorch's `conv2d` on the same number of
threads; needs torch, not in the default list), winograd (a 3x3 conv, forward + both gradients,
as XLA's convolution and as `layers.winograd_conv3x3`, at the shapes of WINOGRAD_SHAPES; not in
the default list). Data are random; parameters random (nothing is trained).
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from configs import ade20k  # noqa: E402
from ecgan_jax import _runtime  # noqa: E402
from ecgan_jax import configuration  # noqa: E402
from ecgan_jax.models import layers  # noqa: E402
from ecgan_jax.models import semantics as semantics_lib  # noqa: E402
from ecgan_jax.training import setup  # noqa: E402
import timing  # noqa: E402  (benchmarks/timing.py)

_SIZE = flags.DEFINE_integer('size', 64, 'Image height = width.')
_NGF = flags.DEFINE_integer('ngf', 16, 'ngf = ndf.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Batch size.')
_ONLY = flags.DEFINE_list('only', ['G', 'D', 'VGG', 'L', 'kernel_grad', 'onehot'],
                          'Components to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls after one warm-up.')
_ROW = flags.DEFINE_string('row', '', 'Ablation row B1..B8 at vs_pytorch.py\'s geometry; empty: '
                           'configs/ade20k.py\'s full model.')


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


# Kernel-gradient shapes (x [B, H, W, Cin], Cout, k, stride, pad) of the layers that matter at
# the small preset (64x64, ngf 16, batch 8) and the paper's (256x256, ngf 64, batch 1).
KERNEL_GRAD_SHAPES = {
    'small G_s conv_comb2': ((8, 64, 64, 150), 173, 3, 1, 1),
    'small SPADE mlp_gamma 64px': ((8, 64, 64, 128), 32, 3, 1, 1),
    'small SPADE mlp_gamma 32px': ((8, 32, 32, 128), 64, 3, 1, 1),
    'small G_s conv_comb': ((8, 64, 64, 173), 3, 3, 1, 1),
    'small trunk conv 64px': ((8, 64, 64, 32), 16, 3, 1, 1),
    'small trunk conv 8px': ((8, 8, 8, 256), 128, 3, 1, 1),
    'small D 4x4 stride 1': ((24, 9, 9, 64), 128, 4, 1, 2),
    'paper SPADE mlp_gamma 256px': ((1, 256, 256, 128), 64, 3, 1, 1),
    'paper trunk conv 256px': ((1, 256, 256, 64), 64, 3, 1, 1),
    'paper trunk conv 16px': ((1, 16, 16, 1024), 1024, 3, 1, 1),
    'paper G_s conv_comb2': ((1, 256, 256, 150), 215, 3, 1, 1),
    'paper D 4x4 stride 2': ((6, 129, 129, 64), 128, 4, 2, 2),
    'paper D 4x4 stride 1': ((6, 33, 33, 256), 512, 4, 1, 2),
}


def time_kernel_grads():
  """XLA:CPU's convolution kernel gradient against `layers._tap_kernel_grad` per shape, with the
  choice `layers.use_tap_kernel_grad` makes."""
  for name, (xs, cout, k, stride, pad) in KERNEL_GRAD_SHAPES.items():
    x = jax.random.normal(jax.random.PRNGKey(0), xs)
    ho, wo = (xs[1] + 2 * pad - k) // stride + 1, (xs[2] + 2 * pad - k) // stride + 1
    dy = jax.random.normal(jax.random.PRNGKey(1), (xs[0], ho, wo, cout))
    kshape = (k, k, xs[3], cout)
    xla = lambda x, dy: jax.vjp(  # noqa: E731
        lambda w: layers._xla_conv(x, w, stride, pad), jnp.zeros(kshape))[1](dy)[0]
    taps = lambda x, dy: layers._tap_kernel_grad(x, dy, k, stride, pad)  # noqa: E731
    choice = 'taps' if layers.use_tap_kernel_grad(xs, kshape, dy.shape) else 'XLA'
    print(f'kernel grad {name}: x {xs} -> {cout}, {k}x{k} stride {stride}; rule picks {choice}')
    _time('  XLA', xla, x, dy)
    _time('  taps', taps, x, dy)


def _forward_taps(x, kern, pad):
  """A stride-1 conv as k*k matmuls of shifted inputs (the forward form tried against XLA's)."""
  k = kern.shape[0]
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
  y = sum(xp[:, i:i + ho, j:j + wo].reshape(-1, c) @ kern[i, j] for i in range(k) for j in range(k))
  return y.reshape(b, ho, wo, -1)


def time_conv_forwards():
  """XLA:CPU's forward convolution against the same conv as per-tap matmuls, at the stride-1
  shapes of KERNEL_GRAD_SHAPES."""
  for name, (xs, cout, k, stride, pad) in KERNEL_GRAD_SHAPES.items():
    if stride != 1:
      continue
    x = jax.random.normal(jax.random.PRNGKey(0), xs)
    kern = jax.random.normal(jax.random.PRNGKey(1), (k, k, xs[3], cout))
    print(f'conv forward {name}: x {xs} -> {cout}, {k}x{k}')
    _time('  XLA', lambda x, kern: layers._xla_conv(x, kern, 1, pad), x, kern)
    _time('  taps', lambda x, kern: _forward_taps(x, kern, pad), x, kern)


def time_onehot_convs(b: int, h: int, w: int, num_classes: int, hidden: int = 128):
  """SPADE's shared conv over the one-hot map, dense vs gathered (`layers.onehot_conv2d`), and a
  whole SPADE norm (up_3's: 2 ngf channels) forward + backward with `onehot_classes` off and on."""
  key = jax.random.PRNGKey(0)
  label = jax.random.randint(key, (b, h, w), 0, num_classes)
  kern = jax.random.normal(key, (3, 3, num_classes, hidden)) * 0.02
  dense = lambda k, label: layers.conv2d(  # noqa: E731
      jax.nn.one_hot(label, num_classes), k, 1, 1)
  gathered = lambda k, label: layers.onehot_conv2d(label, k, 1, 1)  # noqa: E731
  for name, conv in (('dense', dense), ('gathered', gathered)):
    _time(f'one-hot conv {name} fwd', conv, kern, label)
    _time(f'one-hot conv {name} fwd+kgrad',
          jax.grad(lambda k, label, conv=conv: jnp.sum(jnp.sin(conv(k, label)))), kern, label)
  x = jax.random.normal(key, (b, h, w, 2 * _NGF.value))
  for n in (0, num_classes):
    mod = layers.SPADE(hidden, onehot_classes=n)
    v = mod.init(key, x[:1], jax.nn.one_hot(label[:1], num_classes), False)

    def loss(params, x, label, mod=mod, v=v):
      y, _ = mod.apply({**v, 'params': params}, x, jax.nn.one_hot(label, num_classes), True,
                       mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y))

    _time(f'SPADE norm onehot_classes={n}', jax.grad(loss, argnums=(0, 1)), v['params'], x, label)


# SPADE's mlp_gamma / mlp_beta inputs (x [B, H, W, hidden=128]) and width C, small preset and paper.
SPADE_PAIR_SHAPES = {
    'small up_3 64px': ((8, 64, 64, 128), 16),
    'small up_0 16px': ((8, 16, 16, 128), 128),
    'paper up_3 256px': ((1, 256, 256, 128), 64),
    'paper up_1 64px': ((1, 64, 64, 128), 256),
    'paper G_middle 16px': ((1, 16, 16, 128), 1024),
}


def time_spade_pairs():
  """SPADE's gamma and beta (two 3x3 convs of the same input, C outputs each), forward + input
  and kernel gradients of sum(sin(gamma) + cos(beta)): as two `layers.conv2d` calls, and as one
  with the kernels concatenated to 2C outputs (what `layers.SPADE` does)."""
  for name, (xs, c) in SPADE_PAIR_SHAPES.items():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, xs)
    kg, kb = jax.random.normal(key, (2, 3, 3, xs[3], c)) * 0.02

    def loss(kg, kb, x, fused):
      if fused:
        y = layers.conv2d(x, jnp.concatenate([kg, kb], axis=-1), 1, 1)
        gamma, beta = y[..., :c], y[..., c:]
      else:
        gamma, beta = layers.conv2d(x, kg, 1, 1), layers.conv2d(x, kb, 1, 1)
      return jnp.sum(jnp.sin(gamma)) + jnp.sum(jnp.cos(beta))

    print(f'SPADE gamma+beta {name}: x {xs} -> 2 x {c}')
    for fused in (False, True):
      grad = jax.grad(lambda kg, kb, x, fused=fused: loss(kg, kb, x, fused), argnums=(0, 1, 2))
      _time('  one conv, 2C outputs' if fused else '  two convs', grad, kg, kb, x)


# 3x3 stride-1 convs (x [B, H, W, Cin], Cout) of the paper's G (256x256, ngf 64, batch 1; B4 runs
# every one of these) and the small preset's (64x64, ngf 16, batch 8), the widest first.
WINOGRAD_SHAPES = {
    'paper SPADE gamma+beta 256px': ((1, 256, 256, 128), 256),
    'paper G_s conv 256px': ((1, 256, 256, 151), 221),
    'paper SPADE gamma+beta 128px': ((1, 128, 128, 128), 512),
    'paper SPADE gamma+beta 64px': ((1, 64, 64, 128), 1024),
    'paper trunk conv 64px': ((1, 64, 64, 512), 256),
    'paper trunk conv 32px': ((1, 32, 32, 1024), 512),
    'paper trunk conv 256px': ((1, 256, 256, 64), 64),
    'paper trunk conv 16px': ((1, 16, 16, 1024), 1024),
    'small G_s conv 64px': ((8, 64, 64, 151), 173),
    'small SPADE gamma+beta 64px': ((8, 64, 64, 128), 64),
    'small SPADE gamma+beta 32px': ((8, 32, 32, 128), 128),
    'small SPADE gamma+beta 16px': ((8, 16, 16, 128), 256),
    'small SPADE gamma+beta up_3': ((8, 64, 64, 128), 32),
    'demo trunk conv 64px': ((8, 64, 64, 32), 64),
}


def time_winograd():
  """A 3x3 stride-1 conv, forward + input and kernel gradients of sum(sin(y)), at each
  WINOGRAD_SHAPES shape: XLA's convolution (with `conv2d`'s per-tap kernel gradient where its rule
  picks it, i.e. `conv2d` before the Winograd path) against `layers.winograd_conv3x3` (forward
  and autodiff), with the choice `layers.use_winograd` makes."""
  @jax.custom_vjp
  def xla_conv(x, k):
    return layers._xla_conv(x, k, 1, 1)

  xla_conv.defvjp(lambda x, k: (layers._xla_conv(x, k, 1, 1), (x, k)),
                  lambda res, dy: layers._conv_grads(*res, dy, 1, 1))
  for name, (xs, cout) in WINOGRAD_SHAPES.items():
    x = jax.random.normal(jax.random.PRNGKey(0), xs)
    kern = jax.random.normal(jax.random.PRNGKey(1), (3, 3, xs[3], cout)) * 0.02
    choice = 'Winograd' if layers.use_winograd(xs, kern.shape, 1, 1, x.dtype) else 'XLA'
    print(f'3x3 conv {name}: x {xs} -> {cout}; rule picks {choice}')
    for label, conv in (('  XLA', xla_conv), ('  Winograd', layers.winograd_conv3x3)):
      _time(label, jax.grad(lambda x, k, conv=conv: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1)),
            x, kern)


def time_convs_against_torch():
  """One 3x3 convolution at each SPADE_PAIR_SHAPES shape (2C outputs, as SPADE runs it), forward +
  input and kernel gradients of sum(sin(y)): `layers.conv2d` under XLA, then torch's conv2d
  (NCHW, float32) with one thread per CPU of this process's affinity mask, as XLA's pool sizes
  itself."""
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  for name, (xs, c) in SPADE_PAIR_SHAPES.items():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, xs)
    kern = jax.random.normal(key, (3, 3, xs[3], 2 * c)) * 0.02
    gflop = 3 * 2 * xs[0] * xs[1] * xs[2] * 9 * xs[3] * 2 * c / 1e9
    print(f'conv {name}: x {xs} -> {2 * c}, {gflop:.1f} GFLOP forward + both gradients')
    _time('  XLA', jax.grad(lambda k, x: jnp.sum(jnp.sin(layers.conv2d(x, k, 1, 1))),
                            argnums=(0, 1)), kern, x)
    tx = torch.randn(xs[0], xs[3], xs[1], xs[2], requires_grad=True)
    tk = (torch.randn(2 * c, xs[3], 3, 3) * 0.02).requires_grad_()
    walls = []
    for i in range(_REPEATS.value + 1):
      t = time.time()
      torch.sin(torch.nn.functional.conv2d(tx, tk, padding=1)).sum().backward()
      if i:  # the first call warms up
        walls.append(time.time() - t)
      tx.grad = tk.grad = None
    print(f'{"  torch " + torch.__version__:28s} {gflop:9.2f} GFLOP  {"":15s}  wall min '
          f'{min(walls):7.3f} s  median {statistics.median(walls):7.3f} s  '
          f'{torch.get_num_threads()} threads', flush=True)


def main(argv):
  del argv
  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  if _ROW.value:
    config = timing.our_config(_ROW.value.upper(), _SIZE.value, _NGF.value, _BATCH.value)
  else:
    config = ade20k.get_config()
    config.dataset.crop_size = config.dataset.load_size = _SIZE.value
    config.model.ngf = config.model.ndf = _NGF.value
  b, (h, w) = _BATCH.value, configuration.image_size(config)
  print(f'ADE20K labels ({configuration.num_classes(config)} classes), {h}x{w}, ngf=ndf={_NGF.value},'
        f' batch {b}, {_ROW.value.upper() or "full model"}; load average {os.getloadavg()[0]:.1f};'
        ' forward + backward unless noted')
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
    # sem is an argument, not a closed-over constant: XLA would constant-fold D's label-map work
    # at compile time (80 s at 256px) and time only the rest.
    apply = lambda p, x, s: models.discriminator.apply(  # noqa: E731
        {**v, 'params': p}, s, x, train=False)
    _time('D', _grad_of_sum(apply), v['params'], image, sem)
  if 'VGG' in only:
    v = models.vgg.init(key, image[:1])
    _time('VGG', _grad_of_sum(lambda p, x: models.vgg.apply({'params': p}, x)), v['params'], image)
  if 'L' in only:
    v = models.label_generator.init(key, image[:1], train=False)
    apply = lambda p, x: models.label_generator.apply(  # noqa: E731
        {**v, 'params': p}, x, train=False)
    _time('L (SegFormer-b0)', _grad_of_sum(apply), v['params'], image)
  if 'kernel_grad' in only:
    time_kernel_grads()
  if 'conv_forward' in only:
    time_conv_forwards()
  if 'onehot' in only:
    time_onehot_convs(b, h, w, configuration.num_classes(config))
  if 'spade_pair' in only:
    time_spade_pairs()
  if 'conv_vs_torch' in only:
    time_convs_against_torch()
  if 'winograd' in only:
    time_winograd()


if __name__ == '__main__':
  app.run(main)
