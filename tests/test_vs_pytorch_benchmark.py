"""benchmarks/vs_pytorch.py end to end against a FAKE released-ECGAN checkout written into tmp_path
(the same import paths and entry points as the real one, a trivial torch G and D), at a micro size:
the harness runs its interleaved children, reads their JSON and writes the table. No timings are
asserted; the numbers only have to exist and be consistent."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'benchmarks', 'vs_pytorch.py')
MICRO = ['--preset=small', '--size=32', '--ngf=8', '--batch=2', '--iters=1', '--warmup=1',
         '--rounds=1', f'--threads={min(2, len(os.sched_getaffinity(0)))}']

# The reference's layout: options/train_options.py (TrainOptions().parse() reads sys.argv),
# models/pix2pix_model.py, trainers/pix2pix_trainer.py (Pix2PixTrainer with the two step methods).
# Like the real code it imports torchvision and dill at module level (placeholders where missing)
# and checks the batch the harness feeds it against its options.
FAKE_REFERENCE = {
    'options/__init__.py': '',
    'options/train_options.py': '''
        import argparse
        import sys

        import dill  # noqa: F401  (as the real util/util.py)


        class TrainOptions:
          def parse(self):
            p = argparse.ArgumentParser()
            for name in ('name', 'gpu_ids', 'checkpoints_dir', 'dataroot', 'dataset_mode'):
              p.add_argument('--' + name)
            for name in ('label_nc', 'load_size', 'crop_size', 'batchSize', 'ngf', 'ndf',
                         'nThreads'):
              p.add_argument('--' + name, type=int)
            p.add_argument('--aspect_ratio', type=float)
            for name in ('contain_dontcare_label', 'no_instance', 'no_vgg_loss'):
              p.add_argument('--' + name, action='store_true')
            opt = p.parse_args(sys.argv[1:])
            opt.isTrain, opt.gpu_ids = True, []
            print('options parsed')  # the real parser prints its options table
            return opt
        ''',
    'models/__init__.py': '',
    'models/pix2pix_model.py': '''
        import torch
        import torchvision  # noqa: F401  (the real architecture.py does; VGG is never built)


        class Pix2PixModel(torch.nn.Module):
          def __init__(self, opt):
            super().__init__()
            assert opt.no_vgg_loss and opt.gpu_ids == [] and opt.contain_dontcare_label
            self.opt = opt
            self.nc = opt.label_nc + 1
            self.netG = torch.nn.Conv2d(self.nc, 3, 3, padding=1)
            self.netD = torch.nn.Conv2d(self.nc + 3, 1, 4, stride=2, padding=1)

          def preprocess(self, data):
            o = self.opt
            assert data['label'].shape == (o.batchSize, 1, o.crop_size, o.crop_size)
            assert int(data['label'].max()) <= o.label_nc
            assert data['image'].shape == (o.batchSize, 3, o.crop_size, o.crop_size)
            assert data['edge'].shape == data['image'].shape
            sem = torch.zeros(o.batchSize, self.nc, o.crop_size, o.crop_size)
            return sem.scatter_(1, data['label'].long(), 1.0), data['image']

          def forward(self, data, mode):
            sem, real = self.preprocess(data)
            fake = torch.tanh(self.netG(sem))
            if mode == 'discriminator':
              fake = fake.detach()
              return {'D': torch.relu(1 + self.netD(torch.cat([sem, fake], 1))).mean()
                           + torch.relu(1 - self.netD(torch.cat([sem, real], 1))).mean()}
            return {'GAN': -self.netD(torch.cat([sem, fake], 1)).mean()}
        ''',
    'trainers/__init__.py': '',
    'trainers/pix2pix_trainer.py': '''
        import torch

        from models.pix2pix_model import Pix2PixModel


        class Pix2PixTrainer:
          def __init__(self, opt):
            self.pix2pix_model_on_one_gpu = model = Pix2PixModel(opt)
            self.optimizer_G = torch.optim.Adam(model.netG.parameters(), lr=1e-4)
            self.optimizer_D = torch.optim.Adam(model.netD.parameters(), lr=4e-4)

          def _step(self, optimizer, losses):
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()

          def run_generator_one_step(self, data):
            self._step(self.optimizer_G, self.pix2pix_model_on_one_gpu(data, 'generator'))

          def run_discriminator_one_step(self, data):
            self._step(self.optimizer_D, self.pix2pix_model_on_one_gpu(data, 'discriminator'))
        ''',
}


def _write_fake_reference(root) -> str:
  for rel, text in FAKE_REFERENCE.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  return str(root)


def _run(args, timeout=300):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=REPO, check=False)


def _missing(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is None
  except (ImportError, ValueError):
    return True


def test_benchmark_runs_reference_and_ours_interleaved_and_writes_the_table(tmp_path):
  ref = _write_fake_reference(tmp_path / 'ECGAN')
  out = tmp_path / 'vs.json'
  # Our child shares the test session's compilation cache (tests/conftest.py): the harness is the
  # subject here, not the cold compile time.
  proc = _run([f'--reference={ref}', '--sides=ref,B4', f'--out={out}',
               f'--compilation_cache={os.environ["JAX_COMPILATION_CACHE_DIR"]}'] + MICRO)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  assert 'released PyTorch' in proc.stdout and 'ecgan-jax B4' in proc.stdout
  assert 'load average' in proc.stdout
  result = json.loads(out.read_text())
  assert result['machine']['cpus_available'] >= 1 and len(result['machine']['load_after']) == 3
  (small,) = result['results']
  assert (small['size'], small['ngf'], small['batch']) == (32, 8, 2)
  assert [r['side'] for r in small['runs']] == ['ref', 'B4']  # one round: ref first, then ours
  ref_run, ours_run = small['runs']
  for run in (ref_run, ours_run):
    assert 'error' not in run, run
    assert len(run['iter_s']) == 1 and run['iter_s'][0] > 0 and run['first_iter_s'] > 0
    assert len(run['cpus']) == min(2, len(os.sched_getaffinity(0)))
    assert 0 < run['peak_rss_before_iters_mib'] <= run['peak_rss_mib']
    assert run['rss_end_mib'] > 0
  # The fake's parameters: G a 3x3 conv 151 -> 3, D a 4x4 conv 154 -> 1.
  assert ref_run['params'] == {'G': 151 * 9 * 3 + 3, 'D': 154 * 16 + 1}
  assert ref_run['torch_threads'] == len(ref_run['cpus'])
  assert ref_run['placeholders'] == [m for m in ('torchvision', 'torchvision.transforms',
                                                 'torchvision.models', 'dill') if _missing(m)]
  if ref_run['placeholders']:
    assert 'placeholder modules for ' + ', '.join(ref_run['placeholders']) in proc.stdout
  assert ours_run['compile_s'] > 0 and ours_run['flops'] > 0 and ours_run['params']['G'] > 0
  rows = {r['side']: r for r in small['rows']}
  assert rows['B4']['ratio_median'] == pytest.approx(
      rows['B4']['iter_median_s'] / rows['ref']['iter_median_s'])
  assert rows['ref']['compile_s'] is None and rows['B4']['compile_s'] == ours_run['compile_s']


def test_a_broken_reference_fails_its_child_and_the_run(tmp_path):
  """A reference whose step raises: the child's error is reported and the exit code is 1."""
  ref = _write_fake_reference(tmp_path / 'ECGAN')
  trainer = tmp_path / 'ECGAN' / 'trainers' / 'pix2pix_trainer.py'
  trainer.write_text(trainer.read_text().replace(
      "def run_generator_one_step(self, data):",
      "def run_generator_one_step(self, data):\n    raise RuntimeError('broken reference')"))
  proc = _run([f'--reference={ref}', '--sides=ref'] + MICRO)
  assert proc.returncode == 1
  assert 'FAILED' in proc.stdout and 'broken reference' in proc.stdout


@pytest.mark.parametrize('case', ['missing', 'not_a_checkout', 'cleaned_up'])
def test_a_missing_or_wrong_reference_is_one_clear_error_line(tmp_path, case):
  if case == 'missing':
    path = str(tmp_path / 'nowhere')
  else:
    path = _write_fake_reference(tmp_path / 'ECGAN')
    if case == 'not_a_checkout':
      (tmp_path / 'ECGAN' / 'options' / 'train_options.py').unlink()
    else:  # the released repository's last commits delete models/
      (tmp_path / 'ECGAN' / 'models' / 'pix2pix_model.py').unlink()
  proc = _run([f'--reference={path}'] + MICRO, timeout=60)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('vs_pytorch: error: --reference=')
  assert 'git checkout 984be01' in lines[0]
  if case == 'cleaned_up':
    assert 'clean up code' in lines[0]
  assert proc.stdout == ''
