"""notebooks/*.ipynb run top to bottom (tiny config, CPU, 2 simulated devices) with nbclient."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.training import helpers

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'notebooks')


@pytest.mark.parametrize('name', ['losses.ipynb',
                                  pytest.param('quickstart.ipynb', marks=pytest.mark.slow)])
def test_notebook_runs(name, tmp_path, monkeypatch):
  monkeypatch.setenv('ECGAN_NOTEBOOK_WORKDIR', str(tmp_path / 'run'))  # the kernel inherits it
  # 2 devices, as the trainer tests' children (tests/training/helpers.subprocess_env): the
  # notebook's micro config then compiles the very init and step programs that
  # test_trainer.py's runs load from the session's compile cache.
  monkeypatch.setenv('XLA_FLAGS', helpers.subprocess_env(2)['XLA_FLAGS'])
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  assert 'colab.research.google.com/assets/colab-badge.svg' in nb.cells[0].source
  assert any('FULL = False' in c.source for c in nb.cells if c.cell_type == 'code')
  NotebookClient(nb, timeout=900, kernel_name='python3',
                 resources={'metadata': {'path': NOTEBOOKS}}).execute()  # raises on a failing cell
  if name == 'quickstart.ipynb':
    assert os.path.exists(tmp_path / 'run' / 'synthesized.png')
    assert os.listdir(tmp_path / 'run' / 'samples')
    assert os.path.exists(tmp_path / 'run' / 'eval' / '4' / 'metrics.json')  # the evaluate cell
