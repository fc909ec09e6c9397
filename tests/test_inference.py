"""ecgan_jax.load / Synthesizer on the session's tiny checkpoint."""
import os

import numpy as np
import pytest

import ecgan_jax
from ecgan_jax import configuration
from ecgan_jax.data import synthetic


@pytest.fixture(scope='module')
def synth(tiny_checkpoint):
  return ecgan_jax.load(tiny_checkpoint[0])


def scenes(n, size=32):
  rng = np.random.default_rng(0)
  maps = [synthetic.render_scene(rng, size, size)['label'] for _ in range(n)]
  return np.stack(maps).astype(np.int32)


def test_load_describes_the_model(synth, tiny_checkpoint):
  assert synth.step == 0
  assert synth.image_size == (32, 32)
  assert synth.num_classes == 6 and synth.class_names == synthetic.CLASS_NAMES
  assert synth.palette.shape == (6, 3) and synth.multimodal == 'vae'
  assert synth.config.model.ngf == tiny_checkpoint[1].model.ngf
  assert set(synth.outputs) >= {'final', 'coarse', 'edge'}


def test_call_gives_images_per_label_map_independent_of_batching(synth):
  labels = scenes(3)
  out = synth(labels, seed=1)
  assert out['image'].shape == (3, 32, 32, 3) and out['image'].dtype == np.float32
  assert np.all(np.abs(out['image']) <= 1) and out['image'].std() > 0
  assert out['edge'].shape[:3] == (3, 32, 32)
  # Batch of 3 over 8 devices (padded) == each map alone, with its index.
  single = synth(labels[2:3], seed=1, indices=[2])
  np.testing.assert_allclose(single['image'][0], out['image'][2], atol=1e-5)
  # Seeds change the style of this multi-modal model; the same seed reproduces it exactly.
  assert np.array_equal(synth(labels, seed=1)['image'], out['image'])
  assert np.abs(synth(labels, seed=2)['image'] - out['image']).max() > 1e-3


def test_style_image_goes_through_the_encoder(synth):
  labels = scenes(2)
  rng = np.random.default_rng(3)
  style = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  a = synth(labels, style=style)['image']
  b = synth(labels, style=255 - style)['image']
  assert a.shape == (2, 32, 32, 3) and np.abs(a - b).max() > 1e-4
  assert np.array_equal(a, synth(labels, style=style)['image'])


def test_clear_errors(synth, tmp_path):
  with pytest.raises(ValueError, match=r'outside the label space 0\.\.5'):
    synth(np.full((1, 32, 32), 6))
  with pytest.raises(ValueError, match='size 16x32 .* does not match the model \\(32x32\\)'):
    synth(np.zeros((1, 16, 32), np.int32))
  with pytest.raises(ValueError, match='integer class ids'):
    synth(np.zeros((1, 32, 32), np.float32))
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nowhere' / 'checkpoints')):
    ecgan_jax.load(str(tmp_path / 'nowhere'))


def test_load_works_from_any_directory(tiny_checkpoint, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  synth = ecgan_jax.load(os.path.relpath(tiny_checkpoint[0]))
  assert synth.step == 0 and synth.image_size == (32, 32)


def test_load_with_a_config_keeps_the_checkpoints_networks(tiny_checkpoint, caplog):
  """The config given for data and running (as ecgan-synthesize --config passes it) may lack the
  run's --config.model.* overrides: the networks still come from the checkpoint, and a warning
  says which fields differed; other data (here another image size) is refused by name."""
  from configs import synthetic as synthetic_config  # pylint: disable=import-outside-toplevel
  given = synthetic_config.get_config('tiny')
  given.dataset.crop_size = given.dataset.load_size = 32
  given.dataset.root = '/data/somewhere'
  with caplog.at_level('WARNING'):
    synth = ecgan_jax.load(tiny_checkpoint[0], config=given)
  assert synth.multimodal == 'vae' and synth.config.dataset.root == '/data/somewhere'
  assert "model.multimodal 'none' -> 'vae'" in caplog.text
  given.dataset.crop_size = given.dataset.load_size = 64
  with pytest.raises(configuration.ConfigError, match=r'config\.dataset\.crop_size=64, but step 0'):
    ecgan_jax.load(tiny_checkpoint[0], config=given)
