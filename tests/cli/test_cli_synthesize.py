"""launch/synthesize.py (ecgan_jax.cli.synthesize) on the session's tiny checkpoint."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ecgan_jax.cli import synthesize
from ecgan_jax.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def label_dir(tmp_path_factory):
  """Three 32x32 synthetic label maps as mode-L PNGs."""
  d = tmp_path_factory.mktemp('labels')
  rng = np.random.default_rng(5)
  for name in ('a', 'b', 'c'):
    Image.fromarray(synthetic.render_scene(rng, 32, 32)['label']).save(d / f'{name}.png')
  return str(d)


def run(workdir, label_dir, out, *extra):
  synthesize.main(['synthesize', f'--workdir={workdir}', f'--labels={label_dir}', f'--out={out}',
                   *extra])


def pngs(folder):
  return {f: np.asarray(Image.open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))}


@pytest.fixture(scope='module')
def first_run(tiny_checkpoint, label_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('out_seed0'))
  run(tiny_checkpoint[0], label_dir, out, '--seed=0', '--samples=2', '--outputs=final,edge',
      '--batch_size=4')
  return out


def test_one_image_per_map_and_sample_with_index(first_run):
  final = pngs(os.path.join(first_run, 'final'))
  assert sorted(final) == [f'{k}_s{s}.png' for k in 'abc' for s in (0, 1)]
  assert all(im.shape == (32, 32, 3) for im in final.values())
  assert sorted(os.listdir(os.path.join(first_run, 'edge'))) == sorted(final)
  assert sorted(os.listdir(os.path.join(first_run, 'label'))) == ['a.png', 'b.png', 'c.png']
  page = open(os.path.join(first_run, 'index.html'), encoding='utf-8').read()
  assert page.count('<tr>') == 1 + 6 and 'final/b_s1.png' in page
  # The two styles of one map differ (multi-modal model).
  assert np.abs(final['a_s0.png'].astype(int) - final['a_s1.png']).max() > 0


def test_same_seed_same_files_other_seed_other_images(first_run, tiny_checkpoint, label_dir,
                                                      tmp_path):
  again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
  run(tiny_checkpoint[0], label_dir, again, '--seed=0', '--samples=2', '--outputs=final',
      '--batch_size=3')  # another batching: same files
  run(tiny_checkpoint[0], label_dir, other, '--seed=1', '--samples=2', '--outputs=final')
  for f in os.listdir(os.path.join(first_run, 'final')):
    with open(os.path.join(first_run, 'final', f), 'rb') as a, \
         open(os.path.join(again, 'final', f), 'rb') as b:
      assert a.read() == b.read(), f
  a, o = pngs(os.path.join(first_run, 'final')), pngs(os.path.join(other, 'final'))
  assert all(np.abs(a[f].astype(int) - o[f]).max() > 0 for f in a)


def test_one_device_gives_the_images_of_eight(first_run, tiny_checkpoint, label_dir, tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1', JAX_PLATFORMS='cpu',
             PYTHONPATH=REPO)
  out = str(tmp_path / 'one_device')
  proc = subprocess.run(
      [sys.executable, 'launch/synthesize.py', f'--workdir={tiny_checkpoint[0]}',
       f'--labels={label_dir}', f'--out={out}', '--seed=0', '--samples=2'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  a, b = pngs(os.path.join(first_run, 'final')), pngs(os.path.join(out, 'final'))
  assert sorted(a) == sorted(b)
  for f in a:
    assert np.abs(a[f].astype(int) - b[f]).max() <= 1, f  # float reduction order: at most 1 level
    assert np.mean(a[f] != b[f]) < 0.01, f


def test_user_errors_are_one_line(tiny_checkpoint, label_dir, tmp_path):
  bad = tmp_path / 'bad'
  bad.mkdir()
  Image.fromarray(np.full((32, 32), 9, np.uint8)).save(bad / 'x.png')
  with pytest.raises(SystemExit, match=r'x\.png: ids \[9\] are outside the label space 0\.\.5'):
    run(tiny_checkpoint[0], str(bad), str(tmp_path / 'o1'))
  Image.fromarray(np.zeros((16, 32), np.uint8)).save(bad / 'x.png')
  with pytest.raises(SystemExit, match=r'x\.png: size 16x32'):
    run(tiny_checkpoint[0], str(bad), str(tmp_path / 'o2'))
  with pytest.raises(SystemExit, match=r'No checkpoints folder .*nowhere.checkpoints'):
    run(str(tmp_path / 'nowhere'), label_dir, str(tmp_path / 'o3'))
