"""Flax VGG19 against an independent torch VGG19 laid out as torchvision's `features` Sequential,
through the state_dict converter (.pth, .safetensors, msgpack and the launcher)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn

from ecgan_jax.convert import common  # noqa: E402
from ecgan_jax.convert import vgg19 as convert_vgg19  # noqa: E402
from ecgan_jax.models import vgg  # noqa: E402

TOL = 1e-4
# torchvision's VGG19 configuration 'E': channels, 'M' = 2x2 max pool.
CFG_E = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
         512, 512, 512, 512, 'M']
# The slices of SPADE's VGG19 perceptual network: features[0:2], [2:7], [7:12], [12:21], [21:30].
SLICE_ENDS = (2, 7, 12, 21, 30)


class TorchVGG19(nn.Module):
  """torchvision's VGG19 layer layout (features indices) without torchvision."""

  def __init__(self):
    super().__init__()
    layers, c = [], 3
    for v in CFG_E:
      if v == 'M':
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
      else:
        layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        c = v
    self.features = nn.Sequential(*layers)

  def forward(self, x):
    outs, start = [], 0
    for end in SLICE_ENDS:
      for layer in self.features[start:end]:
        x = layer(x)
      outs.append(x)
      start = end
    return outs


@pytest.fixture(scope='module')
def torch_vgg():
  g = torch.Generator().manual_seed(0)
  model = TorchVGG19().eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 4:  # He init keeps activations of order one through 13 layers
        p.copy_(torch.randn(p.shape, generator=g) * np.sqrt(2.0 / p[0].numel()))
      else:
        p.copy_(0.1 * torch.randn(p.shape, generator=g))
  return model


@pytest.fixture(scope='module')
def pth_file(torch_vgg, tmp_path_factory):
  state = dict(torch_vgg.state_dict())
  # A torchvision state_dict also carries the classifier; it must be dropped, not rejected
  # (small stand-ins here: only the names matter to the converter).
  state['classifier.0.weight'] = torch.zeros(4, 8)
  state['classifier.6.bias'] = torch.zeros(10)
  path = str(tmp_path_factory.mktemp('vgg') / 'vgg19.pth')
  torch.save(state, path)
  return path


@pytest.fixture(scope='module')
def image():
  return np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)


def _torch_features(model, x: np.ndarray) -> list[np.ndarray]:
  with torch.no_grad():
    outs = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
  return [o.numpy().transpose(0, 2, 3, 1) for o in outs]


def _assert_features_match(variables, torch_vgg, image):
  x = vgg.imagenet_normalize(jnp.asarray(image))
  ours = vgg.VGG19().apply(variables, x)
  refs = _torch_features(torch_vgg, np.asarray(x))
  assert len(ours) == len(refs) == len(vgg.FEATURE_LAYERS)
  for name, a, b in zip(vgg.FEATURE_LAYERS, ours, refs):
    assert a.shape == b.shape, name
    assert np.abs(b).max() > 0.1, name  # non-trivial activations
    np.testing.assert_allclose(np.asarray(a), b, atol=TOL, rtol=0, err_msg=name)
  return ours


def test_pth_state_dict_gives_torch_features(torch_vgg, pth_file, image):
  variables = convert_vgg19.load_vgg19_params(pth_file)
  assert sorted(variables['params']) == sorted(vgg.conv_names())
  feats = _assert_features_match(variables, torch_vgg, image)
  assert [f.shape for f in feats] == [(2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256),
                                      (2, 4, 4, 512), (2, 2, 2, 512)]


def test_safetensors_state_dict_gives_torch_features(torch_vgg, image, tmp_path):
  from safetensors.numpy import save_file
  path = str(tmp_path / 'vgg19.safetensors')
  save_file({k: v.numpy() for k, v in torch_vgg.state_dict().items()}, path)
  _assert_features_match(convert_vgg19.load_vgg19_params(path), torch_vgg, image)


def test_msgpack_round_trip_is_exact(pth_file, tmp_path):
  variables = convert_vgg19.load_vgg19_params(pth_file)
  path = common.save_variables(variables, str(tmp_path / 'vgg19.msgpack'))
  restored = convert_vgg19.load_vgg19_params(path)
  assert jax.tree.structure(restored) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, restored, variables)


def test_launcher_converts_pth_to_msgpack(pth_file, tmp_path):
  out = str(tmp_path / 'converted.msgpack')
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, os.path.join(root, 'launch', 'convert_weights.py'), '--kind=vgg19',
       f'--input={pth_file}', f'--output={out}'],
      capture_output=True, text=True, env=env, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  jax.tree.map(np.testing.assert_array_equal, convert_vgg19.load_vgg19_params(out),
               convert_vgg19.load_vgg19_params(pth_file))


def test_missing_layer_and_foreign_key_are_reported(torch_vgg):
  state = {k: v.numpy() for k, v in torch_vgg.state_dict().items()}
  without = {k: v for k, v in state.items() if not k.startswith('features.21.')}
  with pytest.raises(common.ConversionError, match=r'missing \(2\).*conv4_2'):
    convert_vgg19.convert_vgg19_state_dict(without)
  foreign = dict(state, **{'features.1.weight': np.zeros(3, np.float32)})  # a ReLU has no weight
  with pytest.raises(common.ConversionError, match=r'features\.1\.weight'):
    convert_vgg19.convert_vgg19_state_dict(foreign)


def test_deeper_layers_and_prefixes_are_accepted(torch_vgg):
  state = {'module.vgg.' + k: v.numpy() for k, v in torch_vgg.state_dict().items()}
  variables = convert_vgg19.convert_vgg19_state_dict(state)
  np.testing.assert_array_equal(variables['params']['conv5_1']['kernel'],
                                state['module.vgg.features.28.weight'].transpose(2, 3, 1, 0))
  assert 'conv5_2' not in variables['params']  # features.30+ are not used by relu5_1


def test_imagenet_normalize_maps_minus_one_one_to_imagenet_statistics():
  x = jnp.asarray([[-1.0, 0.0, 1.0]])
  y = np.asarray(vgg.imagenet_normalize(x))
  mean, std = np.asarray(vgg.IMAGENET_MEAN), np.asarray(vgg.IMAGENET_STD)
  np.testing.assert_allclose(y, (np.asarray([[0.0, 0.5, 1.0]]) - mean) / std, rtol=1e-6)


def test_bfloat16_features_stay_close_and_params_stay_float32(pth_file, image):
  variables = convert_vgg19.load_vgg19_params(pth_file)
  x = vgg.imagenet_normalize(jnp.asarray(image))
  ref = vgg.VGG19().apply(variables, x)
  low = vgg.VGG19(dtype=jnp.bfloat16).apply(variables, x)
  for a, b in zip(ref, low):
    assert b.dtype == jnp.bfloat16
    assert np.abs(np.asarray(b, np.float32) - np.asarray(a)).max() < 0.05 * np.abs(a).max() + 1e-3
  assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(variables))
