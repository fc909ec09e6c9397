"""FID Inception-v3 in Flax against torch-fidelity's FeatureExtractorInceptionV3 (an independent
PyTorch implementation of the same TF 2015-12-05 network, torch only) with the same random weights,
through the converter; and the bilinear resize against torch's F.interpolate (pytorch-fid's)."""
import importlib
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from ecgan_jax.convert import common  # noqa: E402
from ecgan_jax.convert import inception as convert_inception  # noqa: E402
from ecgan_jax.models import inception  # noqa: E402

TOL = 1e-4


def _torch_fidelity_inception():
  """torch_fidelity.feature_extractor_inceptionv3 without running the package __init__, which
  imports torchvision (not installable beside this torch build)."""
  spec = importlib.util.find_spec('torch_fidelity')
  if spec is None:
    pytest.skip('torch-fidelity is not installed (pip install --no-deps torch-fidelity)')
  saved = {k: v for k, v in sys.modules.items() if k.startswith('torch_fidelity')}
  pkg = types.ModuleType('torch_fidelity')
  pkg.__path__ = list(spec.submodule_search_locations)
  sys.modules['torch_fidelity'] = pkg
  try:
    return importlib.import_module('torch_fidelity.feature_extractor_inceptionv3')
  finally:
    for k in [k for k in sys.modules if k.startswith('torch_fidelity')]:
      del sys.modules[k]
    sys.modules.update(saved)


def _random_state_dict(module):
  """He-initialised convs, BN statistics/affine of order one: activations stay O(1) through the
  whole network, so an absolute tolerance means something."""
  g = torch.Generator().manual_seed(0)
  state = {}
  for k, v in module.state_dict().items():
    if k.endswith('num_batches_tracked'):
      state[k] = v
    elif k.endswith('conv.weight'):
      state[k] = torch.randn(v.shape, generator=g) * np.sqrt(2.0 / v[0].numel())
    elif k.endswith('running_var'):
      state[k] = 0.5 + torch.rand(v.shape, generator=g)
    elif k.endswith('bn.weight'):
      state[k] = 0.8 + 0.4 * torch.rand(v.shape, generator=g)
    else:  # running_mean, bn.bias, fc
      state[k] = 0.1 * torch.randn(v.shape, generator=g)
  return state


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  tf_inception = _torch_fidelity_inception()
  cls = tf_inception.FeatureExtractorInceptionV3
  path = str(tmp_path_factory.mktemp('inception') / 'pt_inception-random.pth')
  state = _random_state_dict(_ModuleKeys(tf_inception))
  torch.save(state, path)
  model = cls('inception-v3-compat', ['2048'], feature_extractor_weights_path=path)
  return model, path


class _ModuleKeys(torch.nn.Module):
  """The layers of torch-fidelity's extractor without its weight loading, for the key set."""

  def __init__(self, m):
    super().__init__()
    self.Conv2d_1a_3x3 = m.BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = m.BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = m.BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = m.BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = m.BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = m.InceptionA(192, pool_features=32)
    self.Mixed_5c = m.InceptionA(256, pool_features=64)
    self.Mixed_5d = m.InceptionA(288, pool_features=64)
    self.Mixed_6a = m.InceptionB(288)
    self.Mixed_6b = m.InceptionC(768, channels_7x7=128)
    self.Mixed_6c = m.InceptionC(768, channels_7x7=160)
    self.Mixed_6d = m.InceptionC(768, channels_7x7=160)
    self.Mixed_6e = m.InceptionC(768, channels_7x7=192)
    self.Mixed_7a = m.InceptionD(768)
    self.Mixed_7b = m.InceptionE_1(1280)
    self.Mixed_7c = m.InceptionE_2(2048)
    self.fc = torch.nn.Linear(2048, 1008)


@pytest.fixture(scope='module')
def flax_features(reference):
  _, path = reference
  variables = convert_inception.load_inception_params(path)
  return jax.jit(lambda x: inception.FIDInceptionV3().apply(variables, x)), variables


def test_features_equal_torch_fidelity_with_the_same_random_weights(reference, flax_features):
  model, _ = reference
  images = np.random.default_rng(0).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
  with torch.no_grad():
    (want,) = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
  want = want.numpy()
  # torch-fidelity maps uint8 to (x - 128) / 128; ours takes [-1, 1] images.
  got = np.asarray(flax_features[0](jnp.asarray((images.astype(np.float32) - 128.0) / 128.0)))
  assert got.shape == (2, inception.FEATURE_DIM)
  assert np.abs(want).mean() > 0.05  # activations did not vanish: the tolerance is meaningful
  assert np.max(np.abs(got - want)) <= TOL, np.max(np.abs(got - want))


def test_resize_matches_torch_bilinear_align_corners_false():
  x = np.random.default_rng(1).uniform(-1, 1, (1, 37, 64, 3)).astype(np.float32)
  want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299),
                                         mode='bilinear', align_corners=False).permute(0, 2, 3, 1)
  got = np.asarray(inception.resize_bilinear(jnp.asarray(x)))
  np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_converter_round_trips_through_msgpack_and_rejects_foreign_keys(reference, flax_features,
                                                                       tmp_path):
  _, path = reference
  variables = flax_features[1]
  out = common.save_variables(variables, str(tmp_path / 'inception.msgpack'))
  again = convert_inception.load_inception_params(out)
  jax.tree.map(np.testing.assert_array_equal, variables, again)
  state = common.load_state_dict(path)
  state['Mixed_5b.extra.conv.weight'] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(common.ConversionError, match='Mixed_5b.extra'):
    convert_inception.convert_inception_state_dict(state)
  del state['Mixed_5b.extra.conv.weight'], state['Mixed_7c.branch_pool.bn.running_var']
  with pytest.raises(common.ConversionError, match='missing'):
    convert_inception.convert_inception_state_dict(state)
