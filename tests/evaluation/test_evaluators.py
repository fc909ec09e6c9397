"""Evaluator plumbing shared by every metric: putting a network's variables on the local devices."""
import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax.evaluation import evaluators


def test_replicate_stacks_on_the_host_compiles_nothing_and_feeds_pmap(caplog):
  # Device (jax.Array) and host leaves of several shapes: flax's replicate of jax.Arrays compiled
  # a stack and a reshard per leaf shape; evaluators.replicate must compile no program at all.
  tree = {'kernel': jnp.arange(15.0).reshape(3, 5), 'bias': np.arange(4.0, dtype=np.float32),
          'sigma': jnp.float32(2.0)}
  jax.block_until_ready(tree)
  with jax.log_compiles(True), caplog.at_level('WARNING'):
    out = evaluators.replicate(tree)
    jax.block_until_ready(out)
  assert 'Finished XLA compilation' not in caplog.text, caplog.text
  n = jax.local_device_count()
  assert out['kernel'].shape == (n, 3, 5) and out['bias'].shape == (n, 4)
  assert out['sigma'].shape == (n,)
  total = jax.pmap(lambda t: t['kernel'].sum() + t['bias'].sum() * t['sigma'])(out)
  np.testing.assert_allclose(np.asarray(total), np.full(n, 105.0 + 6.0 * 2.0))
