"""LPIPS in Flax against an independent PyTorch LPIPS (torchvision-layout AlexNet / VGG16
`features` and the lpips package's `lin{l}.model.1` heads, written here without torchvision) on
random weights, through the converter; LPIPS behaviour and the OASIS diversity protocol."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn

from ecgan_jax.convert import common  # noqa: E402
from ecgan_jax.convert import lpips as convert_lpips  # noqa: E402
from ecgan_jax.evaluation import diversity  # noqa: E402
from ecgan_jax.models import lpips  # noqa: E402

TOL = 1e-5


def _alexnet_features():
  return nn.Sequential(
      nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def _vgg16_features():
  layers, c = [], 3
  for v in [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M']:
    if v == 'M':
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
      c = v
  return nn.Sequential(*layers)


# lpips.pretrained_networks: slice boundaries in `features` (relu1..relu5 taps).
TAPS = {'alex': (2, 5, 8, 10, 12), 'vgg': (4, 9, 16, 23, 30)}


class NetLin(nn.Module):
  """lpips' NetLinLayer layout: model = Sequential(Dropout, 1x1 conv to 1 channel, no bias)."""

  def __init__(self, c):
    super().__init__()
    self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))

  def forward(self, x):
    return self.model(x)


class TorchLPIPS(nn.Module):
  def __init__(self, net):
    super().__init__()
    self.net_name = net
    self.features = _alexnet_features() if net == 'alex' else _vgg16_features()
    for l, c in enumerate(lpips.CHANNELS[net]):
      setattr(self, f'lin{l}', NetLin(c))
    self.register_buffer('shift', torch.tensor([-.030, -.088, -.188])[None, :, None, None])
    self.register_buffer('scale', torch.tensor([.458, .448, .450])[None, :, None, None])

  def taps(self, x):
    outs, start = [], 0
    for end in TAPS[self.net_name]:
      for layer in self.features[start:end]:
        x = layer(x)
      outs.append(x)
      start = end
    return outs

  def forward(self, x0, x1):
    f0, f1 = self.taps((x0 - self.shift) / self.scale), self.taps((x1 - self.shift) / self.scale)
    total = 0
    for l, (a, b) in enumerate(zip(f0, f1)):
      na = a / (torch.sqrt(torch.sum(a ** 2, dim=1, keepdim=True)) + 1e-10)
      nb = b / (torch.sqrt(torch.sum(b ** 2, dim=1, keepdim=True)) + 1e-10)
      total = total + getattr(self, f'lin{l}')((na - nb) ** 2).mean(dim=(2, 3), keepdim=True)
    return total.reshape(-1)


def _torch_model(net, seed):
  g = torch.Generator().manual_seed(seed)
  model = TorchLPIPS(net).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.startswith('lin'):
        p.copy_(torch.rand(p.shape, generator=g))  # the package's heads are non-negative
      elif p.ndim == 4:
        p.copy_(torch.randn(p.shape, generator=g) * np.sqrt(2.0 / p[0].numel()))
      else:
        p.copy_(0.05 * torch.randn(p.shape, generator=g))
  return model


def _split_state(model):
  """The two files the lpips package uses: backbone (torchvision `features.*`) and heads."""
  state = {k: v.numpy() for k, v in model.state_dict().items() if k not in ('shift', 'scale')}
  return ({k: v for k, v in state.items() if k.startswith('features.')},
          {k: v for k, v in state.items() if k.startswith('lin')})


@pytest.mark.parametrize('net,size', [('alex', 64), ('vgg', 32)])
def test_lpips_equals_an_independent_torch_module_on_random_weights(net, size, tmp_path):
  model = _torch_model(net, 0)
  backbone, heads = _split_state(model)
  torch.save({k: torch.from_numpy(v) for k, v in backbone.items()}, tmp_path / 'backbone.pth')
  torch.save({k: torch.from_numpy(v) for k, v in heads.items()}, tmp_path / 'heads.pth')
  variables = convert_lpips.load_lpips_params(str(tmp_path / 'backbone.pth'), net,
                                              str(tmp_path / 'heads.pth'))
  rng = np.random.default_rng(1)
  x0, x1 = (rng.uniform(-1, 1, (3, size, size, 3)).astype(np.float32) for _ in range(2))
  with torch.no_grad():
    want = model(*(torch.from_numpy(x).permute(0, 3, 1, 2) for x in (x0, x1))).numpy()
  got = np.asarray(lpips.LPIPS(net).apply(variables, jnp.asarray(x0), jnp.asarray(x1)))
  assert want.min() > 1e-3
  np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
  # the lpips package's own key names (net.slice{k}.{i}) convert to the same variables
  sliced = {f'net.slice1.{k.split(".", 1)[1]}': v for k, v in backbone.items()}
  again = convert_lpips.convert_lpips_state_dicts(sliced, heads, net)
  jax.tree.map(np.testing.assert_array_equal, variables, again)
  out = common.save_variables(variables, str(tmp_path / 'lpips.msgpack'))
  jax.tree.map(np.testing.assert_array_equal, variables,
               convert_lpips.load_lpips_params(out, net))


def test_converter_names_missing_heads(tmp_path):
  backbone, _ = _split_state(_torch_model('alex', 0))
  with pytest.raises(common.ConversionError, match='lin0'):
    convert_lpips.convert_lpips_state_dicts(backbone, {}, 'alex')


@pytest.fixture(scope='module')
def alex_lpips():
  x = jnp.zeros((1, 32, 32, 3))
  model = lpips.LPIPS('alex')
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x, x)
  variables = jax.tree.map(jnp.abs, variables)  # non-negative heads as in the package
  return jax.jit(lambda a, b: model.apply(variables, a, b))


def test_lpips_of_identical_images_is_zero_and_positive_otherwise(alex_lpips):
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
  np.testing.assert_allclose(np.asarray(alex_lpips(x, x)), 0.0, atol=1e-10)  # float noise only
  assert np.all(np.asarray(alex_lpips(x, x[::-1]))[[0, 3]] > 0)


def test_diversity_is_zero_for_a_deterministic_generator_and_positive_with_noise(alex_lpips):
  labels = np.random.default_rng(3).integers(0, 3, (2, 32, 32))
  palette = jnp.asarray([[-0.5, 0.2, 0.9], [0.1, -0.8, 0.3], [0.7, 0.7, -0.2]])

  def deterministic(label, key):
    return palette[label]

  def noisy(label, key):  # 3D noise: an independent latent per sample, per pixel
    return jnp.tanh(palette[label] + 0.5 * jax.random.normal(key, label.shape + (3,)))

  key = jax.random.PRNGKey(0)
  same = diversity.lpips_diversity(deterministic, alex_lpips, labels, key, num_samples=4)
  varied = diversity.lpips_diversity(noisy, alex_lpips, labels, key, num_samples=4)
  assert same < 1e-9  # float noise only
  assert varied > 1e-4 and varied > 1e5 * same
  # the pair count is S(S-1)/2: 20 samples -> 190 pairs
  assert len(np.triu_indices(diversity.NUM_SAMPLES, k=1)[0]) == 190
