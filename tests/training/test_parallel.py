"""ParallelStep: pmap and shard_map run the same body to the same result on 8 or 1 devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ecgan_jax import _runtime
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


def _run(parallelism, devices, steps=3, body=_body, cache=None, ahead=False):
  """`steps` steps of `body` from zeros: (final state, losses). `cache`: an executable cache the
  step comes from; `ahead`: compile_ahead from shapes before the state and batch exist."""
  runner = parallel.ParallelStep(body, parallelism, devices=devices)
  if cache is not None:
    runner.use_executable_cache(cache, 'k')
  d = runner.num_devices
  rng = np.random.default_rng(0)
  host = {'w': np.zeros(4, np.float32), 'ysum': np.zeros((), np.float32),
          'step': np.zeros((), np.int32)}
  frozen = runner.put_replicated({'lr': np.float32(0.1)})
  batches = []
  for _ in range(steps):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = (x @ np.arange(4, dtype=np.float32)).astype(np.float32)
    batches.append({'x': x.reshape(d, 8 // d, 4), 'y': y.reshape(d, 8 // d)})
  if ahead:
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                         sharding=getattr(x, 'sharding', None)),
                          runner.put_batch(batches[0]))
    runner.compile_ahead(runner.abstract_replicated(jax.eval_shape(lambda: host)), shapes, frozen)
  state = runner.put_replicated(host)
  losses = []
  for batch in batches:
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
def test_compile_ahead_from_shapes_makes_the_program_the_real_arguments_load(parallelism, tmp_path,
                                                                             caplog):
  """compile_ahead on abstract_replicated shapes compiles (on a thread) the step the real arguments
  give: the same results, and a later runner called with real arrays loads its cache entry."""
  c = float(np.random.default_rng().uniform(0.5, 1.0))  # a program no earlier run compiled

  def body(state, batch, frozen):
    return _body(state, batch, {'lr': frozen['lr'] * c})
  devices = jax.local_devices()[:2]
  cache = _runtime.ExecutableCache(str(tmp_path))
  ahead, ahead_losses = _run(parallelism, devices, body=body, cache=cache, ahead=True)
  assert len(list(tmp_path.glob('train_step-*.exe'))) == 1
  with caplog.at_level('INFO', logger='ecgan_jax._runtime'):
    real, real_losses = _run(parallelism, devices, body=body, cache=cache)
  assert 'Loaded the compiled train_step' in caplog.text
  assert len(list(tmp_path.glob('train_step-*.exe'))) == 1
  plain, plain_losses = _run(parallelism, devices, body=body)
  np.testing.assert_allclose(ahead_losses, plain_losses, rtol=1e-6)
  np.testing.assert_allclose(real_losses, plain_losses, rtol=1e-6)
  np.testing.assert_allclose(ahead['w'], plain['w'], rtol=1e-6)
  np.testing.assert_allclose(real['w'], plain['w'], rtol=1e-6)


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
