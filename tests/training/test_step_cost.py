"""No wasted networks: a loss whose weight is 0 removes its network from the step program. Checked
with XLA's cost analysis of the lowered (not compiled) single-device step."""
import functools

import jax
import jax.numpy as jnp
import pytest

from ecgan_jax import configuration
from ecgan_jax.training import setup
from tests.training import helpers


def _flops(lowered) -> float:
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def _step_flops(config) -> float:
  """XLA's flop count of one training step on one device (traced and lowered only)."""
  run = setup.build(config, num_devices=1)
  args = helpers.abstract_step_args(run)
  return _flops(jax.jit(run.step_body(axis_name=None)).lower(*args))


def _forward_flops(config, module, **kwargs) -> float:
  """Flops of one forward of `module` on the step's batch of images."""
  h, w = configuration.image_size(config)
  images = jax.ShapeDtypeStruct((config.train.batch_size, h, w, 3), jnp.float32)
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, h, w, 3)),
                                                 **kwargs))
  return _flops(jax.jit(functools.partial(module.apply, **kwargs)).lower(variables, images))


@pytest.fixture(scope='module')
def b5_flops():
  return _step_flops(helpers.micro_config('tiny,B5'))  # VGG and similarity (G_l) both on


def test_lambda_vgg_zero_removes_vgg19_from_the_step(b5_flops):
  config = helpers.micro_config('tiny,B5')
  config.loss.lambda_vgg = 0.0
  without = _step_flops(config)
  one = _forward_flops(config, setup.build_models(config).vgg)
  # Three image pairs (I', I'', I'_e vs real): >= 6 forwards and 3 backwards of VGG19 go away.
  assert b5_flops - without >= 6 * one, (b5_flops, without, one)


def test_lambda_sim_zero_removes_the_label_generator_from_the_step(b5_flops):
  config = helpers.micro_config('tiny,B5')
  config.loss.lambda_sim = 0.0
  without = _step_flops(config)
  one = _forward_flops(config, setup.build_models(config).label_generator, train=False)
  # Similarity on I' and I'' (forward + backward) and G_l's online update go away.
  assert b5_flops - without >= 3 * one, (b5_flops, without, one)
