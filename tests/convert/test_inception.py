"""FID Inception-v3 in Flax against an independent PyTorch FID Inception with the same random
weights, through the converter; the bilinear resize against torch's F.interpolate (pytorch-fid's).

Reference: pytorch-fid imports torchvision, which cannot be installed beside this torch build, so the
PyTorch module below is written here from pytorch-fid's structure (torchvision Inception3 names, the
FIDInceptionA/C/E_1/E_2 blocks). torch-fidelity's FeatureExtractorInceptionV3 (torch only) is a
second, third-party reference: the extra test uses it when `torch_fidelity` is importable (it is not
in requirements-test.txt: its wheel installs a top-level `tests` package that shadows this suite's).
"""
import importlib
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

from ecgan_jax.convert import common  # noqa: E402
from ecgan_jax.convert import inception as convert_inception  # noqa: E402
from ecgan_jax.models import inception  # noqa: E402

TOL = 1e-4


# ----------------------------------------------------------------- the independent PyTorch module
class BasicConv2d(nn.Module):
  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg(x):  # FID blocks: padding excluded from the mean
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

  def forward(self, x):
    return torch.cat([
        self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_avg(x))], 1)


class InceptionB(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    return torch.cat([self.branch3x3(x),
                      self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                      F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionC(nn.Module):
  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    d = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      d = layer(d)
    return torch.cat([self.branch1x1(x),
                      self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                      self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionE(nn.Module):
  def __init__(self, cin, max_pool):
    super().__init__()
    self.max_pool = max_pool
    self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg(x)
    return torch.cat([self.branch1x1(x),
                      torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
                      torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1),
                      self.branch_pool(pooled)], 1)


class TorchFIDInception(nn.Module):
  """pytorch-fid's FIDInceptionV3 layout (torchvision Inception3 names + the FID blocks); input
  [-1, 1] NCHW, resized to 299 with F.interpolate(bilinear, align_corners=False)."""

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = FIDInceptionA(192, 32)
    self.Mixed_5c = FIDInceptionA(256, 64)
    self.Mixed_5d = FIDInceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = FIDInceptionC(768, 128)
    self.Mixed_6c = FIDInceptionC(768, 160)
    self.Mixed_6d = FIDInceptionC(768, 160)
    self.Mixed_6e = FIDInceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    self.fc = nn.Linear(2048, 1008)

  def forward(self, x):
    x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
    x = F.max_pool2d(x, 3, stride=2)
    for name in ('Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c',
                 'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c'):
      x = getattr(self, name)(x)
    return x.mean(dim=(2, 3))



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
  model = TorchFIDInception().eval()
  model.load_state_dict(_random_state_dict(model))
  path = str(tmp_path_factory.mktemp('inception') / 'pt_inception-random.pth')
  torch.save(model.state_dict(), path)
  return model, path


@pytest.fixture(scope='module')
def images():
  """uint8 [2, 299, 299, 3] and the same in [-1, 1] as (x - 128) / 128 (exact in float32)."""
  u8 = np.random.default_rng(0).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
  return u8, (u8.astype(np.float32) - 128.0) / 128.0


@pytest.fixture(scope='module')
def flax_features(reference, images):
  _, path = reference
  variables = convert_inception.load_inception_params(path)
  return np.asarray(jax.jit(inception.FIDInceptionV3().apply)(variables, jnp.asarray(images[1]))), \
      variables


def test_features_equal_an_independent_torch_fid_inception(reference, images, flax_features):
  model, _ = reference
  with torch.no_grad():
    want = model(torch.from_numpy(images[1]).permute(0, 3, 1, 2)).numpy()
  got = flax_features[0]
  assert got.shape == (2, inception.FEATURE_DIM)
  assert np.abs(want).mean() > 0.05  # activations did not vanish: the tolerance is meaningful
  assert np.max(np.abs(got - want)) <= TOL, np.max(np.abs(got - want))


def _torch_fidelity_inception():
  """torch_fidelity.feature_extractor_inceptionv3 without running the package __init__, which
  imports torchvision."""
  spec = importlib.util.find_spec('torch_fidelity')
  if spec is None:
    pytest.skip('torch-fidelity is not importable (optional second reference)')
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


def test_features_equal_torch_fidelity_when_available(reference, images, flax_features):
  module = _torch_fidelity_inception()
  _, path = reference
  model = module.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'],
                                             feature_extractor_weights_path=path)
  with torch.no_grad():  # torch-fidelity maps uint8 to (x - 128) / 128 itself
    (want,) = model(torch.from_numpy(images[0]).permute(0, 3, 1, 2).contiguous())
  assert np.max(np.abs(flax_features[0] - want.numpy())) <= TOL


def test_resize_matches_torch_bilinear_align_corners_false():
  x = np.random.default_rng(1).uniform(-1, 1, (1, 37, 64, 3)).astype(np.float32)
  want = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode='bilinear',
                       align_corners=False).permute(0, 2, 3, 1)
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
