"""Checkpointing: async save/restore of state + grain iterator + config, keep-last-K, signals."""
import os
import signal

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from ecgan_jax.training import checkpointing


def _iterator():
  return grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset().__iter__()


def _state(step):
  return {'step': jnp.asarray(step, jnp.int32), 'rng': jax.random.PRNGKey(step),
          'params': {'w': jnp.full((3, 2), float(step)), 'b': jnp.arange(2, dtype=jnp.bfloat16)}}


def test_save_restore_roundtrips_state_iterator_and_config(tmp_path):
  config = synthetic.get_config('tiny')
  it = _iterator()
  for _ in range(4):
    next(it)
  with checkpointing.Checkpointer(tmp_path / 'ckpt', max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    ckpt.save(4, _state(4), data_iterator=it, config=config)
    after = [next(it) for _ in range(2)]  # must not leak into the saved position
  with checkpointing.Checkpointer(tmp_path / 'ckpt', max_to_keep=2) as ckpt:
    assert ckpt.latest_step() == 4
    it2 = _iterator()
    restored = ckpt.restore(jax.eval_shape(lambda: _state(0)), data_iterator=it2)
    assert ckpt.restore_config()['train']['batch_size'] == config.train.batch_size
  assert isinstance(restored['params']['w'], np.ndarray)
  np.testing.assert_array_equal(restored['params']['w'], np.full((3, 2), 4.0))
  assert restored['params']['b'].dtype == jnp.bfloat16
  np.testing.assert_array_equal(restored['rng'], np.asarray(jax.random.PRNGKey(4)))
  assert int(restored['step']) == 4
  np.testing.assert_array_equal(next(it2), after[0])


def test_keeps_only_last_k_and_restores_latest(tmp_path):
  with checkpointing.Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in (1, 2, 3):
      ckpt.save(step, _state(step))
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 3]
    restored = ckpt.restore(_state(0))
  assert int(restored['step']) == 3
  restored = checkpointing.Checkpointer(tmp_path).restore(_state(0), step=2)
  np.testing.assert_array_equal(restored['params']['w'], np.full((3, 2), 2.0))


def test_restore_without_checkpoint_raises(tmp_path):
  with checkpointing.Checkpointer(tmp_path) as ckpt, pytest.raises(FileNotFoundError):
    ckpt.restore(_state(0))


def test_replicated_device_state_saves_as_host_arrays(tmp_path):
  n = jax.local_device_count()
  state = jax.pmap(lambda x: x + 1.0)(jnp.zeros((n, 3)))
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, {'w': state[0]})
  restored = checkpointing.Checkpointer(tmp_path).restore({'w': jax.ShapeDtypeStruct((3,), jnp.float32)})
  np.testing.assert_array_equal(restored['w'], np.ones(3))


def test_shutdown_signal_turns_sigterm_into_flag():
  with checkpointing.ShutdownSignal() as shutdown:
    assert not shutdown.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert shutdown.requested and shutdown.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is not shutdown._handle


@pytest.mark.parametrize('change', ['missing_leaf', 'other_shape'])
def test_restoring_a_checkpoint_of_another_config_names_the_folder_and_what_to_do(tmp_path, change):
  from ecgan_jax import configuration  # pylint: disable=import-outside-toplevel
  with checkpointing.Checkpointer(tmp_path / 'ckpt', async_checkpointing=False) as ckpt:
    ckpt.save(2, _state(2))
  target = _state(0)
  if change == 'missing_leaf':
    target['params']['extra'] = jnp.zeros((4,))
  else:
    target['params']['w'] = jnp.zeros((5, 2))
  with checkpointing.Checkpointer(tmp_path / 'ckpt') as ckpt:
    with pytest.raises(configuration.ConfigError, match='does not fit this config') as e:
      ckpt.restore(jax.eval_shape(lambda: target))
  assert str(tmp_path / 'ckpt') in str(e.value) and '--workdir' in str(e.value)
