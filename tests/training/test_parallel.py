"""ParallelStep: pmap and shard_map run the same body to the same result on 8 or 1 devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ecgan_jax.training import parallel


def _body(state, batch, frozen):
  """One SGD step of least squares, grads pmean'd, plus an all_gather'ed running statistic."""
  def loss_fn(w):
    return jnp.mean((batch['x'] @ w - batch['y']) ** 2)
  loss, grad = jax.value_and_grad(loss_fn)(state['w'])
  grad = lax.pmean(grad, parallel.AXIS)
  gathered = lax.all_gather(batch['y'], parallel.AXIS, axis=0, tiled=True)
  new = {'w': state['w'] - frozen['lr'] * grad, 'ysum': state['ysum'] + jnp.sum(gathered),
         'step': state['step'] + 1}
  return new, {'loss': lax.pmean(loss, parallel.AXIS)}


def _run(parallelism, devices, steps=3):
  runner = parallel.ParallelStep(_body, parallelism, devices=devices)
  d = runner.num_devices
  rng = np.random.default_rng(0)
  state = runner.put_replicated({'w': np.zeros(4, np.float32), 'ysum': np.zeros((), np.float32),
                                 'step': np.zeros((), np.int32)})
  frozen = runner.put_replicated({'lr': np.float32(0.1)})
  losses = []
  for _ in range(steps):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = (x @ np.arange(4, dtype=np.float32)).astype(np.float32)
    batch = {'x': x.reshape(d, 8 // d, 4), 'y': y.reshape(d, 8 // d)}
    state, metrics = runner(state, runner.put_batch(batch), frozen)
    losses.append(float(runner.get_replicated(metrics)['loss']))
  return runner.get_replicated(state), losses


@pytest.mark.parametrize('parallelism', ['pmap', 'shard_map'])
def test_eight_devices_match_one_device(parallelism):
  s8, l8 = _run(parallelism, jax.local_devices())
  s1, l1 = _run(parallelism, jax.local_devices()[:1])
  np.testing.assert_allclose(s8['w'], s1['w'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(l8, l1, rtol=1e-6)
  assert s8['ysum'] == pytest.approx(float(s1['ysum']), rel=1e-6)
  assert int(s8['step']) == 3 and isinstance(s8['w'], np.ndarray) and s8['w'].shape == (4,)
  assert l8[-1] < l8[0]


def test_pmap_and_shard_map_agree():
  sp, lp = _run('pmap', None)
  ss, ls = _run('shard_map', None)
  np.testing.assert_allclose(sp['w'], ss['w'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(lp, ls, rtol=1e-6)


@pytest.mark.parametrize('parallelism', ['pmap', 'shard_map'])
def test_empty_frozen_tree_passes_through_to_the_step(parallelism):
  """At loss.lambda_vgg = 0 the frozen networks are {}: pmap rejects a call with no mapped
  argument, so put_replicated hands an empty tree through and the step still runs."""
  runner = parallel.ParallelStep(lambda s, b, f: ({'w': s['w'] + jnp.sum(b['x'])}, {}),
                                 parallelism, devices=jax.local_devices()[:2])
  assert runner.put_replicated({}) == {}
  state = runner.put_replicated({'w': np.zeros((), np.float32)})
  state, _ = runner(state, runner.put_batch({'x': np.ones((2, 1), np.float32)}),
                    runner.put_replicated({}))
  assert float(runner.get_replicated(state)['w']) == 1.0  # each device adds its own example
