"""Frechet distance, KID and the pytorch-fid .npz statistics cache (host, float64)."""
import numpy as np
import pytest

from ecgan_jax.data import synthetic
from ecgan_jax.evaluation import fid


def _gaussian_features(n, d, seed, shift=0.0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(d, d)) / np.sqrt(d)
  return rng.normal(size=(n, d)) @ a + shift


def test_frechet_distance_equals_an_eigenvalue_formula_to_1e_6():
  f1, f2 = _gaussian_features(400, 32, 0), _gaussian_features(300, 32, 1, shift=0.3)
  (m1, s1), (m2, s2) = fid.feature_statistics(f1), fid.feature_statistics(f2)
  # independent route: Tr sqrt(S1 S2) = sum sqrt(eigenvalues of S1 S2), real and >= 0 here
  eig = np.linalg.eigvals(s1 @ s2).real
  ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(eig.clip(0)))
  got = fid.frechet_distance(m1, s1, m2, s2)
  assert abs(got - ref) / ref <= 1e-6
  # statistics use np.cov's N-1 normalisation (pytorch-fid)
  np.testing.assert_allclose(s1, np.cov(f1, rowvar=False))


def test_fid_of_a_set_against_itself_is_zero():
  m, s = fid.feature_statistics(_gaussian_features(500, 16, 2))
  assert abs(fid.frechet_distance(m, s, m, s)) < 1e-8


def _scene_features(images):
  """A fixed feature map for the behaviour test: 8x8 average-pooled pixels (192-d)."""
  n, h, w, c = images.shape
  return images.reshape(n, 8, h // 8, 8, w // 8, c).mean(axis=(2, 4)).reshape(n, -1)


def _blur(images, k):
  if k == 0:
    return images
  out = images.copy()
  for axis in (1, 2):  # box blur of width 2k + 1, edge padded
    pad = [(0, 0)] * 4
    pad[axis] = (k, k)
    p = np.pad(out, pad, mode='edge')
    out = sum(np.take(p, range(i, i + images.shape[axis]), axis=axis) for i in range(2 * k + 1))
    out = out / (2 * k + 1)
  return out


@pytest.fixture(scope='module')
def scenes():
  scenes = synthetic.SyntheticScenes(32, 32, size=600, seed=3)
  return np.stack([scenes[i]['image'] for i in range(600)]).astype(np.float64) / 127.5 - 1.0


def test_fid_rises_monotonically_with_noise_and_blur(scenes):
  real, fake = scenes[:300], scenes[300:]
  m_r, s_r = fid.feature_statistics(_scene_features(real))
  rng = np.random.default_rng(4)
  noise = rng.normal(size=fake.shape)
  by_noise = [fid.frechet_distance(m_r, s_r, *fid.feature_statistics(
      _scene_features(fake + a * noise))) for a in (0.0, 0.1, 0.2, 0.4, 0.8)]
  by_blur = [fid.frechet_distance(m_r, s_r, *fid.feature_statistics(
      _scene_features(_blur(fake, k)))) for k in (0, 1, 2, 4)]
  assert all(np.diff(by_noise) > 0), by_noise
  assert all(np.diff(by_blur) > 0), by_blur


def test_kid_is_about_zero_for_one_distribution_and_positive_for_two():
  a = np.random.default_rng(5).normal(size=(600, 64))
  b = np.random.default_rng(6).normal(size=(600, 64))
  same, same_std = fid.kernel_inception_distance(a, b, num_subsets=20, subset_size=200)
  other, _ = fid.kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=200)
  assert abs(same) < 3 * same_std + 1e-3
  assert other > 20 * max(abs(same), same_std)


def test_statistics_cache_round_trips_in_pytorch_fid_format(tmp_path):
  m, s = fid.feature_statistics(_gaussian_features(50, 8, 7))
  path = fid.save_statistics(str(tmp_path / 'stats' / 'val.npz'), m, s)
  with np.load(path) as f:
    assert sorted(f.keys()) == ['mu', 'sigma']
  m2, s2 = fid.load_statistics(path)
  np.testing.assert_array_equal(m, m2)
  np.testing.assert_array_equal(s, s2)
  np.savez(tmp_path / 'bad.npz', mean=m)
  with pytest.raises(ValueError, match='mu and sigma'):
    fid.load_statistics(str(tmp_path / 'bad.npz'))
  with pytest.raises(FileNotFoundError, match='eval.fid_stats'):
    fid.load_statistics(str(tmp_path / 'missing.npz'))
