"""Optimisers (TTUR, b1/b2, SGD, second-half decay), EMA, train-state contents, distributed flags,
sample-grid helpers: small pure functions, no step compile."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ecgan_jax import configuration
from ecgan_jax.training import distributed, logging_utils, setup
from ecgan_jax.training import state as state_lib
from tests.training import helpers


def test_learning_rate_is_constant_then_decays_linearly_to_zero_over_second_half():
  sched = state_lib.learning_rate_schedule(4e-4, 100, True)
  assert float(sched(0)) == pytest.approx(4e-4)
  assert float(sched(49)) == pytest.approx(4e-4)
  assert float(sched(75)) == pytest.approx(2e-4, rel=1e-5)
  assert float(sched(100)) == pytest.approx(0.0, abs=1e-12)
  assert float(state_lib.learning_rate_schedule(1e-4, 100, False)(99)) == pytest.approx(1e-4)


def test_optimizers_use_ttur_rates_and_config_betas():
  config = helpers.micro_config()
  config.train.num_steps = 10
  opts = state_lib.make_optimizers(config)
  params = {'w': jnp.ones(3)}
  grads = {'w': jnp.array([1.0, -2.0, 0.5])}
  # Adam with b1 = 0: the first update is -lr * g / (|g| + eps) = -lr * sign(g).
  for opt, lr in ((opts.g, 1e-4), (opts.d, 4e-4)):
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates['w'], -lr * np.sign(grads['w']), rtol=1e-4)
  config.optim.optimizer = 'sgd'
  sgd = state_lib.make_optimizers(config).g
  updates, _ = sgd.update(grads, sgd.init(params), params)
  np.testing.assert_allclose(updates['w'], -1e-4 * np.asarray(grads['w']), rtol=1e-6)
  config.optim.optimizer = 'rmsprop'
  with pytest.raises(configuration.ConfigError, match='config.optim.optimizer'):
    configuration.validate_config(config)


def test_adam_second_moment_uses_beta2_from_config():
  config = helpers.micro_config()
  config.optim.beta2 = 0.9
  opt = state_lib.make_optimizers(config).g
  state = opt.init({'w': jnp.zeros(1)})
  _, state = opt.update({'w': jnp.full(1, 2.0)}, state)
  adam_state = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(
      s, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)][0]
  np.testing.assert_allclose(adam_state.nu['w'], 0.1 * 4.0, rtol=1e-6)  # (1 - b2) g^2
  np.testing.assert_allclose(adam_state.mu['w'], 2.0, rtol=1e-6)  # b1 = 0: mu = g


def test_frozen_label_generator_gets_no_updates():
  config = helpers.micro_config()
  config.model.label_generator_checkpoint = '/nonexistent/segformer.msgpack'
  assert not state_lib.label_generator_trained_online(config)
  opt = state_lib.make_optimizers(config).l
  updates, _ = opt.update({'w': jnp.ones(2)}, opt.init({'w': jnp.ones(2)}))
  np.testing.assert_array_equal(updates['w'], 0.0)


def test_ema_update_moves_toward_params():
  ema = state_lib.ema_update({'a': jnp.zeros(2)}, {'a': jnp.ones(2)}, 0.9)
  np.testing.assert_allclose(ema['a'], 0.1)
  np.testing.assert_allclose(state_lib.ema_update(ema, {'a': jnp.ones(2)}, 0.0)['a'], 1.0)


def _abstract_state(arg):
  config = helpers.micro_config(arg)
  return config, setup.build(config).abstract_state()


def test_train_state_holds_every_trained_part_for_the_full_model():
  config, s = _abstract_state('tiny')
  assert s.step.shape == () and s.step.dtype == jnp.int32
  assert set(s.g_params) == {'generator'}
  assert 'batch_stats' in s.g_state['generator'] and 'batch_stats' in s.d_state
  assert s.l_params and jax.tree.structure(s.ema_params) == jax.tree.structure(s.g_params)
  nc = configuration.num_classes(config)
  assert set(s.bank) == {f's{k}' for k in config.model.contrastive_strides}  # one bank per scale
  for bank in s.bank.values():
    assert bank.pixel_queue.shape == (nc, config.loss.bank_size, config.model.proj_dim)
  assert jax.tree.structure(s.g_opt) != jax.tree.structure(())


def test_train_state_drops_parts_that_an_ablation_switches_off():
  _, s = _abstract_state('tiny,B4')
  assert s.l_params == {} and s.bank == {}
  config = helpers.micro_config('tiny')
  config.model.multimodal = 'vae'
  s = setup.build(config).abstract_state()
  assert set(s.g_params) == {'generator', 'style_encoder'}


def test_distributed_resolve_reads_flags_then_environment():
  assert distributed.resolve(environ={}) is None
  assert distributed.resolve(mode='auto', environ={}) == {}
  env = {distributed.ENV_COORDINATOR: '10.0.0.1:1234', distributed.ENV_NUM_PROCESSES: '4',
         distributed.ENV_PROCESS_ID: '2'}
  assert distributed.resolve(environ=env) == dict(
      coordinator_address='10.0.0.1:1234', num_processes=4, process_id=2)
  assert distributed.resolve('h:1', 2, 1, environ=env)['process_id'] == 1
  assert distributed.resolve('h:1', 1, 0, environ={}) is None
  with pytest.raises(ValueError, match='process id'):
    distributed.resolve('h:1', 2, None, environ={})
  with pytest.raises(ValueError, match='not in'):
    distributed.resolve('h:1', 2, 5, environ={})


def test_sample_grid_tiles_label_edges_and_images():
  n, h, w = 2, 8, 6
  label = np.arange(n * h * w).reshape(n, h, w) % 3
  edge = np.where(np.arange(h * w).reshape(1, h, w, 1) % 2, 1.0, -1.0).repeat(n, 0)
  img = np.zeros((n, h, w, 3), np.float32)
  grid = logging_utils.sample_grid(label, edge, None, img, img + 1.0, img - 1.0, 3,
                                   class_image=img + 0.5)
  assert grid.shape == (n * (h + 2) + 2, 7 * (w + 2) + 2, 3) and grid.dtype == np.uint8
  tile = lambda i, j: grid[2 + i * (h + 2):2 + i * (h + 2) + h, 2 + j * (w + 2):2 + j * (w + 2) + w]
  np.testing.assert_array_equal(tile(0, 0), logging_utils.colorize_labels(label[0], 3))
  assert set(np.unique(tile(1, 1))) == {0, 255}  # edges in black/white
  assert np.all(tile(0, 2) == 128)  # no I'_e (ablation B1): grey
  assert np.all(tile(0, 4) == 191)  # I_g (0.5 -> 191)
  assert np.all(tile(0, 5) == 255) and np.all(tile(0, 6) == 0)


def test_first_nonfinite_names_the_term():
  assert logging_utils.first_nonfinite({'g/vgg': 1.0, 'd/total': 2.0}) is None
  assert logging_utils.first_nonfinite({'g/vgg': np.inf, 'g/gan': np.nan, 'd/x': 0.0}) == 'g/gan'
