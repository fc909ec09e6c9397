"""Shared pieces of the training tests: a micro config, subprocess runs with a shared compile cache."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from configs import synthetic
from ecgan_jax import _runtime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --config overrides that turn configs/synthetic.py:tiny into the micro model of the trainer tests:
# 32x32 images, 4 steps, a checkpoint every 2, no sample grids (each costs another compile).
MICRO_FLAGS = ('--config.dataset.crop_size=32', '--config.dataset.load_size=32',
               '--config.dataset.synthetic_size=64', '--config.train.num_steps=4',
               '--config.train.checkpoint_every=2', '--config.train.sample_every=0',
               '--config.train.log_every=1')


def micro_config(arg: str = 'tiny'):
  """configs/synthetic.py:`arg` with the MICRO_FLAGS overrides applied."""
  c = synthetic.get_config(arg)
  for flag in MICRO_FLAGS:
    path, value = flag[len('--config.'):].split('=')
    section, key = path.split('.')
    c[section][key] = type(c[section][key])(value)
  return c


def equivalence_config():
  """The micro B8 config of the device-layout equivalence tests (test_step, test_multihost): SGD
  (Adam magnifies float noise on zero-gradient parameters), contrastive sampling independent of
  the device split, 2 steps. One config, so both tests compile the same 8-device step program
  (shared through the session's compile cache)."""
  config = micro_config()
  config.train.num_steps = 2
  config.optim.optimizer = 'sgd'
  config.loss.contrastive_gather = 'maps'
  return config


def subprocess_env(num_devices: int, cache_dir: str | None = None) -> dict:
  """Environment of a child JAX process: `num_devices` CPU devices and a persistent compile cache,
  by default the test session's (tests/conftest.py): identical programs compile once per run."""
  env = dict(os.environ)
  cache_dir = cache_dir or os.environ['JAX_COMPILATION_CACHE_DIR']
  env['XLA_FLAGS'] = _runtime.with_default_xla_flags(
      f'--xla_force_host_platform_device_count={num_devices}')  # the commands' flags, as conftest
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = cache_dir
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env['PYTHONUNBUFFERED'] = '1'
  return env


def run_python(args: list[str], env: dict, timeout: float = 600, check: bool = True,
               **kwargs) -> subprocess.CompletedProcess:
  proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout, **kwargs)
  if check and proc.returncode != 0:
    raise AssertionError(f'{args} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n'
                         f'{proc.stderr[-6000:]}')
  return proc


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
  """A free 127.0.0.1 TCP port, kept bound (SO_REUSEPORT, not listening) until the block ends.

  Picking a port and freeing it before a child binds it is a race: any bind(0) in between can take
  it. Held with SO_REUSEPORT, the port stays out of the kernel's free pool while the children's
  servers (gRPC listens with SO_REUSEPORT) bind it too; connections only reach listening sockets.
  """
  with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(('127.0.0.1', 0))
    yield sock.getsockname()[1]


def run_together(workers: Sequence[tuple[list[str], dict]], log_prefix: str,
                 timeout: float = 1800) -> list[str]:
  """Runs the Python processes `workers` ((args, env) each) side by side; returns their outputs.

  Output goes to the files `{log_prefix}-{i}.log`, not pipes: a child blocked on a full pipe
  (64 KiB) never reaches the collective its peers wait in. When one exits non-zero the others are
  killed (they would wait for it until the coordination service times out) and the assertion
  shows every worker's last lines. `timeout` (s) guards against a hang; it is not a timing.
  """
  logs = [open(f'{log_prefix}-{i}.log', 'w+') for i in range(len(workers))]  # pylint: disable=consider-using-with
  procs = [subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
           for (args, env), log in zip(workers, logs)]
  deadline, timed_out = time.monotonic() + timeout, False
  try:
    while any(p.poll() is None for p in procs):
      if any(p.returncode for p in procs if p.returncode is not None):
        break
      if time.monotonic() > deadline:
        timed_out = True
        break
      time.sleep(0.5)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    outs = []
    for log in logs:
      log.seek(0)
      outs.append(log.read())
      log.close()
  if any(p.returncode for p in procs):
    raise AssertionError(f'timed out after {timeout} s\n' * timed_out + '\n'.join(
        f'--- worker {i}: {args} exited with {p.returncode}{" (killed)" if p.returncode < 0 else ""}'
        f'\n{out[-4000:]}' for i, ((args, _), p, out) in enumerate(zip(workers, procs, outs))))
  return outs


def train_args(workdir: str, arg: str = 'tiny', extra: tuple[str, ...] = ()) -> list[str]:
  return ['launch/train.py', f'--config=configs/synthetic.py:{arg}', f'--workdir={workdir}',
          *MICRO_FLAGS, *extra]


def restore_host_state(config, workdir: str, step: int | None = None):
  """The TrainState saved in `workdir` (numpy leaves), restored onto the abstract state."""
  from ecgan_jax.training import checkpointing, setup  # pylint: disable=import-outside-toplevel
  abstract = setup.build(config).abstract_state()
  with checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints')) as ckpt:
    return ckpt.restore(abstract, step=step)


def assert_trees_equal(a, b, exact: bool = True, rtol: float = 0.0, atol: float = 0.0) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  la, ta = jax.tree_util.tree_flatten_with_path(a)
  lb, tb = jax.tree_util.tree_flatten_with_path(b)
  assert ta == tb, 'tree structures differ'
  for (path, x), (_, y) in zip(la, lb):
    name = jax.tree_util.keystr(path)
    if exact:
      assert np.array_equal(np.asarray(x), np.asarray(y)), f'{name} differs'
    else:
      np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol,
                                 atol=atol, err_msg=name)


# The trunk's first layer feeds a parameter-free BatchNorm directly, so the true gradient of its
# bias is zero; at the 1x1 latent of 32x32 inputs the batch variance of some channels is ~0 and the
# BatchNorm divides float noise by sqrt(eps): this bias moves by amplified noise (up to ~1 per
# step), differently in any two runs that reduce in another order. It has no effect on any output.
NOISE_ONLY = ("['trunk']['fc']['bias']",)


def assert_updates_close(a, b, start, rel: float, atol: float = 1e-7) -> None:
  """The changes a - start and b - start agree leaf by leaf to `rel` of the change's size:
  max|a - b| <= rel * max(leaf change, 1% of the largest change in the tree). The floor covers
  parameters whose true gradient is zero (biases feeding a normalisation), where both runs only
  move by float noise; `atol` is float32 resolution for parameters that moved by ~0 (e.g. the last
  discriminator bias under the hinge loss, whose weighted real/fake gradients cancel exactly).
  Reduction-order noise stays well inside; a wrong reduction (a sum instead of
  a mean, a missing all_gather, unsynced statistics) does not."""
  import jax  # pylint: disable=import-outside-toplevel
  la, ta = jax.tree_util.tree_flatten_with_path(a)
  lb, tb = jax.tree_util.tree_flatten_with_path(b)
  ls, _ = jax.tree_util.tree_flatten_with_path(start)
  assert ta == tb, 'tree structures differ'
  rows = []
  for (path, x), (_, y), (_, s0) in zip(la, lb, ls):
    x, y, s0 = (np.asarray(v, np.float64) for v in (x, y, s0))
    scale = max(np.max(np.abs(x - s0), initial=0.0), np.max(np.abs(y - s0), initial=0.0))
    rows.append((jax.tree_util.keystr(path), np.max(np.abs(x - y), initial=0.0), scale))
  floor = 0.01 * max((r[2] for r in rows), default=0.0)
  for name, diff, scale in rows:
    if any(n in name for n in NOISE_ONLY):
      continue
    assert diff <= rel * max(scale, floor) + atol, (
        f'{name}: results differ by {diff:.3g}, the change is {scale:.3g} (floor {floor:.3g})')


class RollExamples:
  """Host batch {k: [D, b, H, W, ...]} -> each example rolled spatially by its own offset.

  At 32x32 the SPADE latent is 1x1: the trunk reads the label at pixel (0, 0) only, which is sky in
  every synthetic scene, so unrolled all examples give the trunk the same input, its BatchNorm
  variance is 0 and a comparison of two device layouts only measures float noise divided by
  sqrt(eps). Rolling makes the examples differ at the latent pixel, as real data does.
  """

  def __repr__(self):  # grain needs a stable repr for iterator checkpoints
    return 'RollExamples()'

  def __call__(self, batch: dict) -> dict:
    out = {}
    for key, v in batch.items():
      flat = v.reshape((-1,) + v.shape[2:]).copy()
      h, w = flat.shape[1:3]
      for i in range(flat.shape[0]):
        flat[i] = np.roll(flat[i], (i * h // 8, i * w // 5), axis=(0, 1))
      out[key] = flat.reshape(v.shape)
    return out


def abstract_step_args(run) -> tuple:
  """(state, batch, frozen) of `run`'s one-device step as ShapeDtypeStructs (for tracing and
  lowering without allocating or compiling)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from ecgan_jax import configuration  # pylint: disable=import-outside-toplevel
  from ecgan_jax.training import state as state_lib  # pylint: disable=import-outside-toplevel
  config = run.config
  frozen = {}
  if state_lib.uses_vgg(config):
    frozen = jax.eval_shape(lambda: {'vgg': run.init_models.vgg.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']})
  h, w = configuration.image_size(config)
  b = config.train.batch_size
  batch = {'label': jax.ShapeDtypeStruct((b, h, w), jnp.int32),
           'image': jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32),
           'edge': jax.ShapeDtypeStruct((b, h, w, 1), jnp.float32)}
  return run.abstract_state(), batch, frozen
