"""Building blocks shared by the ECGAN++ networks (NHWC throughout).

- `conv2d`: NHWC/HWIO convolution whose kernel gradient is per-tap matmuls on the CPU backend
  where XLA:CPU's own convolution weight gradient is slow (docs/performance.md).
- `onehot_conv2d`: the same convolution of a one-hot map, given as class ids, as a sum of k x k
  gathered kernel rows (cost independent of the number of classes).
- `Conv` / `Dense`: PyTorch-style layers (symmetric integer padding, SPADE's xavier-normal init with
  gain 0.02) with optional spectral normalisation (`SpectralNormalizer`); the u/v/sigma power-
  iteration state lives in the `batch_stats` collection and is updated only when
  `update_stats=True` (training).
- `ParamFreeNorm`: affine-free batch norm (synced over `axis_name` under pmap) or instance norm.
- `SPADE`: param-free norm modulated by a 3x3 conv MLP of the semantic map (Park et al., 2019).
- `SPADEResBlock`: the SPADE residual block with a learned 1x1 shortcut (no bias) when the channel
  count changes.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from ecgan_jax.models.semantics import resize_nearest

Dtype = Any

# SPADE's BaseNetwork.init_weights('xavier', gain=0.02): xavier-normal with gain 0.02, zero bias.
default_kernel_init = nn.initializers.variance_scaling(0.02 ** 2, 'fan_avg', 'normal')

LEAKY_SLOPE = 0.2


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with SPADE's slope 0.2."""
  return nn.leaky_relu(x, LEAKY_SLOPE)


def use_spectral(mode: str, in_reference: bool) -> bool:
  """Spectral-norm placement: 'all' -> every layer (paper's wording), 'none' -> no layer,
  'reference' -> only where the SPADE/ECGAN code puts it (`in_reference`)."""
  if mode == 'all':
    return True
  if mode == 'none':
    return False
  if mode == 'reference':
    return in_reference
  raise ValueError(f"spectral_norm mode {mode!r} is not one of ['reference', 'all', 'none']")


def to_dtype(name: str | Dtype) -> Dtype:
  """'float32' | 'bfloat16' (config.model.dtype, configuration.DTYPES) -> jnp dtype; a jnp dtype
  passes through."""
  if not isinstance(name, str):
    return name
  return {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[name]


def upsample2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling [B, H, W, C] -> [B, 2H, 2W, C] (nn.Upsample(scale_factor=2))."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 average pool, stride 2, padding 1, padded cells not counted (count_include_pad=False).

  [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C]: the multi-scale discriminator's downsampling.
  """
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


class SpectralNormalizer(nn.Module):
  """Divides a weight by its largest singular value, estimated by power iteration (PyTorch's
  `torch.nn.utils.spectral_norm`, not `flax.linen.SpectralNorm`, which stores the already
  normalised kernel at init and so changes the effective learning rate).

  The weight [..., out] is viewed as the matrix W [out, prod(...)]. State in `batch_stats`:
  u [out], v [in] (unit vectors) and sigma (last estimate). With update_stats=True (training) one
  power-iteration step refreshes u, v and stores them; otherwise the stored u, v are used
  unchanged (PyTorch eval). sigma = u^T W v is differentiable in W; u and v are not.
  """
  n_init_steps: int = 15  # power iterations at init, so sigma is meaningful before training

  @nn.compact
  def __call__(self, weight: jax.Array, update_stats: bool) -> jax.Array:
    w = weight.reshape(-1, weight.shape[-1]).T.astype(jnp.float32)  # [out, in]
    initializing = self.is_initializing()

    def init_uv():
      ku, kv = jax.random.split(self.make_rng('params'))
      u = _l2_normalize(jax.random.normal(ku, (w.shape[0],)))
      v = _l2_normalize(jax.random.normal(kv, (w.shape[1],)))
      def step(_, uv):
        v = _l2_normalize(w.T @ uv[0])
        return _l2_normalize(w @ v), v

      u, v = jax.lax.fori_loop(0, self.n_init_steps, step, (u, v))
      return jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)

    uv = init_uv() if initializing else (None, None)
    u_var = self.variable('batch_stats', 'u', lambda: uv[0])
    v_var = self.variable('batch_stats', 'v', lambda: uv[1])
    sigma_var = self.variable('batch_stats', 'sigma', lambda: jnp.ones((), jnp.float32))
    u, v = u_var.value, v_var.value
    if update_stats and not initializing:
      wd = jax.lax.stop_gradient(w)
      v = _l2_normalize(wd.T @ u)
      u = _l2_normalize(wd @ v)
    sigma = u @ w @ v
    if update_stats and not initializing:
      u_var.value, v_var.value, sigma_var.value = u, v, jax.lax.stop_gradient(sigma)
    elif initializing:
      sigma_var.value = jax.lax.stop_gradient(sigma)
    return weight / sigma.astype(weight.dtype)


def _weight(mod: nn.Module, shape: tuple[int, ...], init: Callable, update_stats: bool
            ) -> jax.Array:
  """The `kernel` param of a Conv/Dense (inside its compact call), spectral-normalised if asked."""
  kernel = mod.param('kernel', init, shape)
  if mod.spectral:
    kernel = SpectralNormalizer(name='sn')(kernel, update_stats)
  return kernel


def _bias(mod: nn.Module) -> jax.Array | None:
  """The layer's float32 'bias' [features] (zeros at init), or None without use_bias."""
  return mod.param('bias', nn.initializers.zeros, (mod.features,)) if mod.use_bias else None


def _add_bias(mod: nn.Module, y: jax.Array) -> jax.Array:
  bias = _bias(mod)
  return y if bias is None else y + bias.astype(mod.dtype)


def _xla_conv(x: jax.Array, kernel: jax.Array, stride: int, pad: int) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _tap_window(xp: jax.Array, i: int, j: int, stride: int, out_hw: tuple[int, int]) -> jax.Array:
  """What tap (i, j) of a strided conv reads: xp [B, Hp, Wp, ...] (already padded) ->
  [B, Ho, Wo, ...], element (p, q) = xp[:, i + stride * p, j + stride * q]."""
  ho, wo = out_hw
  rest = xp.shape[3:]
  return lax.slice(xp, (0, i, j) + (0,) * len(rest),
                   (xp.shape[0], i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1) + rest,
                   (1, stride, stride) + (1,) * len(rest))


def _tap_kernel_grad(x: jax.Array, dy: jax.Array, k: int, stride: int, pad: int) -> jax.Array:
  """Kernel gradient of conv2d as k*k matmuls, one per tap: dK[i, j] = x_shift(i, j)^T @ dy,
  x [B, H, W, Cin], dy [B, Ho, Wo, Cout] -> [k, k, Cin, Cout] float32."""
  c = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  d2 = dy.reshape(-1, dy.shape[-1])
  taps = []
  for i in range(k):
    for j in range(k):
      xs = _tap_window(xp, i, j, stride, dy.shape[1:3]).reshape(-1, c)
      taps.append(lax.dot_general(xs, d2, (((0,), (0,)), ((), ())),
                                  preferred_element_type=jnp.float32))
  return jnp.stack(taps).reshape(k, k, c, dy.shape[-1])


def use_tap_kernel_grad(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
                        out_shape: tuple[int, ...]) -> bool:
  """Whether the CPU backend should compute a conv's kernel gradient as per-tap matmuls rather
  than with XLA's own convolution. XLA:CPU's kernel gradient runs at ~25 GFLOP/s for small
  problems but drops to ~5 GFLOP/s (and to 0.1 for 4x4 kernels) once the batch x output pixels x
  Cout or the kernel grow; the rule and its measurements are in docs/performance.md."""
  k, _, cin, cout = kernel_shape
  n = out_shape[0] * out_shape[1] * out_shape[2]
  return k != 3 or n * cout >= 2 ** 21 or k * k * cin * cout >= 2 ** 20


# Winograd F(2x2, 3x3) (Lavin & Gray, 2016): a 3x3 conv over 4x4 input tiles (stride 2) gives 2x2
# output tiles with 16 multiplications per tile and channel pair instead of 36. V = B^T d B
# transforms the input tiles, U = G g G^T the kernel, and Y = A^T (U . V) A the products back;
# on flattened tiles these are the Kronecker products below, one matmul each.
_WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
_WINOGRAD_IN = np.kron(_WINOGRAD_BT, _WINOGRAD_BT)      # [16, 16]: (i, j) <- (a, b) of a tile
_WINOGRAD_KERNEL = np.kron(_WINOGRAD_G, _WINOGRAD_G)    # [16, 9]: (i, j) <- (r, s) of the kernel
_WINOGRAD_OUT = np.kron(_WINOGRAD_AT, _WINOGRAD_AT)     # [4, 16]: (p, q) of a 2x2 tile <- (i, j)
# Smallest forward cost (multiply-adds x 2) at which the CPU backend takes the Winograd path: below
# it the milliseconds saved are few and each conv's extra ops still cost compile time.
WINOGRAD_MIN_FLOPS = 10 ** 9


def _stride2_windows(x: jax.Array, axis: int, t: int) -> jax.Array:
  """x with 2t + 2 elements along `axis` -> windows of 4 with stride 2, [.., t, 4, ..] there:
  element (i, a) = x[2i + a]. Two reshaped slices and one concatenation (no gather)."""
  split = lambda y: y.reshape(y.shape[:axis] + (t, 2) + y.shape[axis + 1:])  # noqa: E731
  return jnp.concatenate([split(lax.slice_in_dim(x, 0, 2 * t, axis=axis)),
                          split(lax.slice_in_dim(x, 2, 2 * t + 2, axis=axis))], axis=axis + 1)


def winograd_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [B, H, W, Cin] (H, W even) * kernel [3, 3, Cin, Cout], stride 1, zero padding 1 ->
  [B, H, W, Cout]: the same values as XLA's convolution up to float rounding (relative error
  ~1e-6 in float32), from 16 batched matmuls [B*H*W/4, Cin] x [Cin, Cout] and three small
  constant matmuls for the transforms. Its autodiff gradients are Winograd-shaped as well (the
  transforms are linear)."""
  b, h, w, c = x.shape
  cout = kernel.shape[-1]
  th, tw = h // 2, w // 2
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  tiles = _stride2_windows(_stride2_windows(xp, 1, th), 3, tw)     # [B, th, 4, tw, 4, Cin]
  tiles = tiles.transpose(2, 4, 0, 1, 3, 5).reshape(16, -1)        # [(a, b), B*th*tw*Cin]
  v = (jnp.asarray(_WINOGRAD_IN) @ tiles).reshape(16, b * th * tw, c)
  u = (jnp.asarray(_WINOGRAD_KERNEL) @ kernel.reshape(9, c * cout)).reshape(16, c, cout)
  m = jnp.einsum('kpc,kcd->kpd', v, u)                              # [16, B*th*tw, Cout]
  y = (jnp.asarray(_WINOGRAD_OUT) @ m.reshape(16, -1)).reshape(2, 2, b, th, tw, cout)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, h, w, cout)


def use_winograd(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], stride: int, pad: int,
                 dtype: Any) -> bool:
  """Whether the CPU backend runs a conv (forward and both gradients) as `winograd_conv3x3`:
  3x3, stride 1, padding 1, even H and W, float32, at least WINOGRAD_MIN_FLOPS, at least 256
  output pixels, Cin >= 64 and Cout >= 64. Where it applies it took 0.5-0.85x the time of XLA's
  convolution in the paper's and the small preset's layers; with thin outputs (128 -> 32) it was
  slower (docs/performance.md)."""
  b, h, w, cin = x_shape
  k, _, _, cout = kernel_shape
  return (k == 3 and kernel_shape[1] == 3 and stride == 1 and pad == 1 and h % 2 == 0
          and w % 2 == 0 and jnp.dtype(dtype) == jnp.float32 and b * h * w >= 256
          and cin >= 64 and cout >= 64 and 2 * b * h * w * 9 * cin * cout >= WINOGRAD_MIN_FLOPS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, stride: int, pad: int) -> jax.Array:
  """x [B, H, W, Cin] * kernel [k, k, Cin, Cout], symmetric zero padding `pad` -> [B, Ho, Wo, Cout].

  Elsewhere than on the CPU backend this is XLA's convolution with XLA's gradients. On the CPU
  backend, large float32 3x3 stride-1 convs (`use_winograd`) run forward and backward as
  `winograd_conv3x3`; of the others, the kernel gradient is k*k per-tap matmuls where
  `use_tap_kernel_grad` says XLA:CPU's own is slow (up to 70x for D's 4x4 layers). Same values up
  to float rounding. Only x and kernel are kept for the backward pass.
  """
  return _conv2d_forward(x, kernel, stride, pad)


def _conv2d_forward(x, kernel, stride, pad):
  if use_winograd(x.shape, kernel.shape, stride, pad, x.dtype):
    return lax.platform_dependent(x, kernel, cpu=winograd_conv3x3,
                                  default=lambda x, k: _xla_conv(x, k, stride, pad))
  return _xla_conv(x, kernel, stride, pad)


def _conv2d_fwd(x, kernel, stride, pad):
  return _conv2d_forward(x, kernel, stride, pad), (x, kernel)


def _conv_grads(x: jax.Array, kernel: jax.Array, dy: jax.Array, stride: int, pad: int
                ) -> tuple[jax.Array, jax.Array]:
  """conv2d's gradients (dx, dkernel) without the Winograd path: XLA's input gradient, and XLA's
  kernel gradient except on the CPU backend where `use_tap_kernel_grad` picks per-tap matmuls."""
  dx = jax.vjp(lambda v: _xla_conv(v, kernel, stride, pad), x)[1](dy)[0]

  def xla_kernel_grad(x, dy):
    return jax.vjp(lambda k: _xla_conv(x, k, stride, pad), kernel)[1](dy)[0]

  if not use_tap_kernel_grad(x.shape, kernel.shape, dy.shape):
    return dx, xla_kernel_grad(x, dy)

  def cpu_kernel_grad(x, dy):
    return _tap_kernel_grad(x, dy, kernel.shape[0], stride, pad).astype(kernel.dtype)

  return dx, lax.platform_dependent(x, dy, cpu=cpu_kernel_grad, default=xla_kernel_grad)


def _conv2d_bwd(stride, pad, residuals, dy):
  x, kernel = residuals
  if use_winograd(x.shape, kernel.shape, stride, pad, x.dtype):
    return lax.platform_dependent(
        x, kernel, dy, cpu=lambda x, k, dy: jax.vjp(winograd_conv3x3, x, k)[1](dy),
        default=lambda x, k, dy: _conv_grads(x, k, dy, stride, pad))
  return _conv_grads(x, kernel, dy, stride, pad)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def onehot_ids(x: jax.Array) -> jax.Array:
  """One-hot map [B, H, W, n] (at most one 1 per pixel, the rest 0) -> ids int32 [B, H, W];
  an all-zero pixel gets id n."""
  n = x.shape[-1]
  return jnp.where(jnp.max(x, axis=-1) > 0, jnp.argmax(x, axis=-1), n).astype(jnp.int32)


def onehot_conv2d(ids: jax.Array, kernel: jax.Array, stride: int, pad: int) -> jax.Array:
  """conv2d(one_hot(ids, n), kernel, stride, pad) without the one-hot map.

  ids int [B, H, W] in [0, n] (n: no class, a zero input pixel), kernel [k, k, n, Cout] ->
  [B, Ho, Wo, Cout] float32: out(p) = sum over taps o of kernel[o, ids(p + o)], zero padding
  reading id n. k*k gathers of Cout-rows instead of k*k*n*Cout MACs per pixel; the kernel
  gradient is a scatter-add. Equal to the convolution up to float summation order. No gradient
  flows to the ids (class labels are data).
  """
  k, _, n, cout = kernel.shape
  b, h, w = ids.shape
  ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  table = jnp.concatenate([kernel.astype(jnp.float32), jnp.zeros((k, k, 1, cout), jnp.float32)],
                          axis=2)
  ip = jnp.pad(ids, ((0, 0), (pad, pad), (pad, pad)), constant_values=n)
  y = jnp.zeros((b * ho * wo, cout), jnp.float32)
  for i in range(k):
    for j in range(k):
      tap = _tap_window(ip, i, j, stride, (ho, wo))
      y = y + jnp.take(table[i, j], tap.reshape(-1), axis=0, mode='clip')
  # Pinned row-major by a dot with the identity (Cout^2 MACs per pixel, ~1/k^2n of the conv's):
  # XLA:CPU keeps dot operands row-major, where otherwise it fused the elementwise tap sum into
  # the transposed layout a later kernel gradient wants and read the gathered rows with a 2 MB
  # stride (docs/performance.md).
  y = y @ jnp.eye(cout, dtype=jnp.float32)
  return y.reshape(b, ho, wo, cout)


class Conv(nn.Module):
  """2-D convolution with PyTorch padding semantics and optional spectral norm.

  [B, H, W, Cin] -> [B, (H + 2p - k) // s + 1, ..., features]. Params `kernel` [k, k, Cin, out]
  and `bias` [out] are float32 whatever the compute dtype; the spectral-norm state sits in
  `batch_stats` under `sn`. `onehot=(start, n)` declares channels [start, start + n) of x a
  one-hot map (at most one 1 per pixel, the rest 0, e.g. `one_hot_semantics`): they are
  convolved by `onehot_conv2d` (same result, same params, no input gradient to them).
  `stopped=(start, n)` declares them data of any values: their own convolution, no input
  gradient (so the backward pass computes input gradients for the other channels only).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int | None = None  # None -> kernel_size // 2 ("same" for odd kernels)
  use_bias: bool = True
  spectral: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable = default_kernel_init
  onehot: tuple[int, int] | None = None
  stopped: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
    k, s = self.kernel_size, self.strides
    p = k // 2 if self.padding is None else self.padding
    kernel = _weight(self, (k, k, x.shape[-1], self.features), self.kernel_init, update_stats)
    block = self.onehot or self.stopped
    if not block:
      return _add_bias(self, conv2d(x.astype(self.dtype), kernel.astype(self.dtype), s, p))
    if self.onehot and self.stopped:
      raise ValueError('Conv takes one data block: onehot or stopped, not both')
    a, n = block
    c = x.shape[-1]
    if not 0 <= a < a + n <= c:
      raise ValueError(f'data channels [{a}, {a + n}) are not inside the input\'s {c} channels')
    data, kb = jax.lax.stop_gradient(x[..., a:a + n]), kernel[:, :, a:a + n]
    if self.onehot:
      y = onehot_conv2d(onehot_ids(data), kb, s, p)
    else:
      y = conv2d(data.astype(self.dtype), kb.astype(self.dtype), s, p).astype(jnp.float32)
    if n < c:  # the channels around the data block: an ordinary convolution
      dense = jnp.concatenate([x[..., :a], x[..., a + n:]], axis=-1).astype(self.dtype)
      kd = jnp.concatenate([kernel[:, :, :a], kernel[:, :, a + n:]], axis=2).astype(self.dtype)
      y = y + conv2d(dense, kd, s, p).astype(jnp.float32)
    return _add_bias(self, y.astype(self.dtype))


class SegmentConv(nn.Module):
  """3x3 convolution (stride 1, zero padding) that mixes only pixels of the same segment.

  x [B, H, W, Cin], ids int [B, H, W] -> [B, H, W, features]: out(p) = b + sum_o W_o x(p + o)
  [ids(p + o) == ids(p)]. Equals, at every pixel of segment c, a plain conv of x * [ids == c].
  Nine matmuls over shifted copies: the cost of one conv, whatever the number of segments.
  Params as `layers.Conv` (`kernel` [3, 3, Cin, out], `bias`, spectral norm in batch_stats).
  """
  features: int
  use_bias: bool = True
  spectral: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array, ids: jax.Array, update_stats: bool = False) -> jax.Array:
    b, h, w, c = x.shape
    chex.assert_shape(ids, (b, h, w))
    kernel = _weight(self, (3, 3, c, self.features), self.kernel_init, update_stats)
    kernel = kernel.astype(self.dtype)
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
    ip = jnp.pad(ids, ((0, 0), (1, 1), (1, 1)), constant_values=-2)  # padding matches nothing
    y = jnp.zeros((b, h, w, self.features), jnp.promote_types(self.dtype, jnp.float32))
    for dy in range(3):
      for dx in range(3):
        same = (ip[:, dy:dy + h, dx:dx + w] == ids)[..., None]
        y = y + jnp.where(same, xp[:, dy:dy + h, dx:dx + w], 0) @ kernel[dy, dx]
    return _add_bias(self, y.astype(self.dtype))


class ConvWeights(nn.Module):
  """The parameters of a `Conv` without the convolution: in_features -> (kernel [k, k, in,
  features] spectral-normalised if asked, bias [features] or None). Same names and state as
  `Conv` ('kernel', 'bias', 'sn'), so a module can convolve several layers' kernels at once (one
  conv with their outputs side by side) and keep each layer's own parameters."""
  features: int
  kernel_size: int = 3
  use_bias: bool = True
  spectral: bool = False
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, in_features: int, update_stats: bool = False
               ) -> tuple[jax.Array, jax.Array | None]:
    k = self.kernel_size
    return (_weight(self, (k, k, in_features, self.features), self.kernel_init, update_stats),
            _bias(self))


class Dense(nn.Module):
  """Linear layer [..., Cin] -> [..., features] with optional spectral norm."""
  features: int
  use_bias: bool = True
  spectral: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
    kernel = _weight(self, (x.shape[-1], self.features), default_kernel_init, update_stats)
    return _add_bias(self, x.astype(self.dtype) @ kernel.astype(self.dtype))


class ParamFreeNorm(nn.Module):
  """Affine-free normalisation of [B, H, W, C], computed in float32, returned in x's dtype.

  kind='batch': BatchNorm over (B, H, W) with statistics synced across `axis_name` in training, as
  SPADE's SynchronizedBatchNorm2d: normalise by the biased batch variance, update the running
  averages with momentum 0.1 and the *unbiased* variance (n / (n - 1), n counted over all
  devices), eps 1e-5. Evaluation uses the running averages (`batch_stats`: mean, var).
  kind='instance': InstanceNorm over (H, W) per example, no running statistics (as in PyTorch's
  default InstanceNorm2d).
  """
  kind: str = 'batch'
  axis_name: str | None = None
  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = x.astype(jnp.float32)
    if self.kind == 'instance':
      y = nn.InstanceNorm(epsilon=self.epsilon, use_bias=False, use_scale=False,
                          dtype=jnp.float32, name='in')(y)
      return y.astype(x.dtype)
    if self.kind != 'batch':
      raise ValueError(f"param-free norm {self.kind!r} is not one of ['batch', 'instance']")
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (c,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (c,), jnp.float32)
    if not train:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean, mean2 = jnp.mean(y, axis=(0, 1, 2)), jnp.mean(y * y, axis=(0, 1, 2))
      n = y.shape[0] * y.shape[1] * y.shape[2]
      if self.axis_name is not None:
        mean, mean2 = jax.lax.pmean((mean, mean2), self.axis_name)
        n = n * jax.lax.psum(1, self.axis_name)
      var = jnp.maximum(mean2 - mean * mean, 0.0)
      if not self.is_initializing():
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * mean
        ra_var.value = (1 - m) * ra_var.value + m * var * (n / jnp.maximum(n - 1, 1))
    y = (y - mean) * jax.lax.rsqrt(var + self.epsilon)
    return y.astype(x.dtype)


class SPADE(nn.Module):
  """Spatially-adaptive normalisation: norm(x) * (1 + gamma(S)) + beta(S).

  x [B, H, W, C], seg [B, Hs, Ws, Cs] (resized to H x W with PyTorch-nearest semantics) ->
  [B, H, W, C]. gamma/beta come from a shared 3x3 conv with `hidden` channels + ReLU, then two 3x3
  convs (params mlp_gamma, mlp_beta) computed as one conv with 2C outputs. The MLP is
  spectral-normalised only under spectral_norm='all'. With onehot_classes = n > 0 the first n
  channels of seg are one-hot and the shared conv gathers kernel rows for them
  (`Conv.onehot`).
  """
  hidden: int = 128
  param_free_norm: str = 'batch'
  spectral_norm: str = 'reference'
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  onehot_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, seg: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    normalized = ParamFreeNorm(self.param_free_norm, self.axis_name, name='norm')(x, train)
    seg = resize_nearest(seg, x.shape[1:3]).astype(self.dtype)
    sn = use_spectral(self.spectral_norm, False)
    onehot = (0, self.onehot_classes) if self.onehot_classes else None
    actv = nn.relu(Conv(self.hidden, 3, spectral=sn, dtype=self.dtype, onehot=onehot,
                        name='mlp_shared')(seg, train))
    # mlp_gamma and mlp_beta as ONE conv with 2C outputs (their own params, concatenated): one
    # convolution, input gradient and kernel gradient instead of two each: 20-30% less time for
    # the pair at most shapes, fewer kernels to compile (docs/performance.md, spade_pair).
    (kg, bg), (kb, bb) = (ConvWeights(c, 3, spectral=sn, name=name)(self.hidden, train)
                          for name in ('mlp_gamma', 'mlp_beta'))
    kernel = jnp.concatenate([kg, kb], axis=-1).astype(self.dtype)
    y = conv2d(actv, kernel, 1, 1) + jnp.concatenate([bg, bb]).astype(self.dtype)
    gamma, beta = y[..., :c], y[..., c:]
    return (normalized * (1 + gamma) + beta).astype(self.dtype)


class SPADEResBlock(nn.Module):
  """SPADE residual block: x [B, H, W, Cin], seg -> [B, H, W, features].

  out = shortcut(x) + conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x)))))), middle width
  min(Cin, features); shortcut = conv_s(SPADE_s(x)) (1x1, no bias) when Cin != features, else x.
  conv_0/conv_1/conv_s carry spectral norm under spectral_norm='reference' or 'all'.
  onehot_classes: as in `SPADE`.
  """
  features: int
  hidden: int = 128
  param_free_norm: str = 'batch'
  spectral_norm: str = 'reference'
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  onehot_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, seg: jax.Array, train: bool) -> jax.Array:
    fin = x.shape[-1]
    fmid = min(fin, self.features)
    sn = use_spectral(self.spectral_norm, True)

    def spade(name):
      return SPADE(self.hidden, self.param_free_norm, self.spectral_norm, self.axis_name,
                   self.dtype, self.onehot_classes, name=name)

    if fin != self.features:
      x_s = Conv(self.features, 1, use_bias=False, spectral=sn, dtype=self.dtype, name='conv_s')(
          spade('norm_s')(x, seg, train), train)
    else:
      x_s = x
    dx = Conv(fmid, 3, spectral=sn, dtype=self.dtype, name='conv_0')(
        leaky_relu(spade('norm_0')(x, seg, train)), train)
    dx = Conv(self.features, 3, spectral=sn, dtype=self.dtype, name='conv_1')(
        leaky_relu(spade('norm_1')(dx, seg, train)), train)
    out = x_s.astype(self.dtype) + dx
    chex.assert_shape(out, (*x.shape[:3], self.features))
    return out


def resblock_class(remat: bool) -> type[nn.Module]:
  """SPADEResBlock, or its rematerialised version (activations recomputed in the backward pass,
  `train` static) when config.model.remat is set. Same parameters either way."""
  return nn.remat(SPADEResBlock, static_argnums=(3,)) if remat else SPADEResBlock
