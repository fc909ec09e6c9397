"""The start-up data check: every defect of a folder dataset is found before anything compiles,
named by file with the skip hint; skip mode leaves each bad file out once and lists it."""
import logging
import os

import pytest

from configs import default
from ecgan_jax.cli import common
from ecgan_jax.data import pipeline, sources
from ecgan_jax.data.transforms import BadExampleError
from tests.data import fixtures as fx


def folder_config(root, on_bad='error', check_labels='all'):
  c = default.get_config('tiny')
  c.dataset.name = 'folder'
  c.dataset.root = root
  c.dataset.label_nc = 4
  c.dataset.preprocess_mode = 'fixed'
  c.dataset.load_size = c.dataset.crop_size = 32
  c.dataset.on_bad_example = on_bad
  c.dataset.check_labels = check_labels
  c.train.batch_size = 2
  return c


@pytest.mark.parametrize('case', fx.BAD_CASES)
def test_defect_stops_the_pipeline_build_naming_the_file_and_the_skip_flag(tmp_path, case):
  bad = fx.folder_with_defect(str(tmp_path / 'data'), case)
  listing = str(tmp_path / 'run' / 'bad_examples.txt')
  with pytest.raises(BadExampleError) as info:
    pipeline.make_train_iterator(folder_config(str(tmp_path / 'data')), 1,
                                 bad_examples_file=listing)
  message = common.user_error_message(info.value)  # what the command prints
  last = message.splitlines()[-1]
  assert len(message.splitlines()) <= 2
  assert os.path.basename(bad) in message and 'Traceback' not in message
  assert '--config.dataset.on_bad_example=skip' in last
  if case != 'missing_label':  # unmatched files stop the pairing, before the check's list
    assert os.path.basename(bad) in open(listing).read()


@pytest.mark.parametrize('case', fx.BAD_CASES)
def test_skip_mode_reports_each_bad_file_once_and_lists_it(tmp_path, case, caplog):
  bad = fx.folder_with_defect(str(tmp_path / 'data'), case)
  listing = str(tmp_path / 'run' / 'bad_examples.txt')
  with caplog.at_level(logging.WARNING):
    it = pipeline.make_train_iterator(folder_config(str(tmp_path / 'data'), 'skip'), 1,
                                      bad_examples_file=listing)
    for _ in range(8):  # 16 examples: every remaining example is read at least twice
      batch = next(it)
      assert batch['image'].shape == (1, 2, 32, 32, 3)
    it.close()
  name = os.path.basename(bad)
  assert sum(name in r.getMessage() for r in caplog.records) == 1, caplog.text
  lines = open(listing).read().splitlines()
  assert len(lines) == 1 and name in lines[0]


def test_label_ids_outside_the_sample_are_found_while_reading_and_reported_once(tmp_path,
                                                                               caplog):
  bad = fx.folder_with_defect(str(tmp_path / 'data'), 'label_out_of_range')
  config = folder_config(str(tmp_path / 'data'), 'skip', check_labels='none')
  listing = str(tmp_path / 'run' / 'bad_examples.txt')
  with caplog.at_level(logging.WARNING):
    it = pipeline.make_train_iterator(config, 1, bad_examples_file=listing)
    for _ in range(8):
      next(it)
    it.close()
  assert sum(os.path.basename(bad) in r.getMessage() for r in caplog.records) == 1
  assert os.path.basename(bad) in open(listing).read()


def test_clean_folder_passes_and_sampled_label_check_decodes_only_the_sample(tmp_path,
                                                                            monkeypatch):
  fx.folder(str(tmp_path), n=10)
  src = sources.folder_source(str(tmp_path), 'train', 4)
  decoded = []
  original = sources.read_id_map

  def counting_read(path, *a):
    # Only this folder's files count: grain's close() does not wait for a read thread that is
    # mid-example, so an earlier test's iterator may still finish one read here.
    if path.startswith(str(tmp_path)):
      decoded.append(path)
    return original(path, *a)

  monkeypatch.setattr(sources, 'read_id_map', counting_read)
  assert src.check('sample', sample=3) == []
  assert len(decoded) == 3
  decoded.clear()
  assert src.check('none') == [] and not decoded


def test_defect_found_while_reading_names_the_file_and_the_skip_flag(tmp_path):
  bad = fx.folder_with_defect(str(tmp_path / 'data'), 'label_out_of_range')
  it = pipeline.make_train_iterator(folder_config(str(tmp_path / 'data'), check_labels='none'), 1)
  with pytest.raises(BadExampleError) as info:
    for _ in range(8):
      next(it)
  it.close()
  message = common.user_error_message(info.value)
  assert os.path.basename(bad) in message and '--config.dataset.on_bad_example=skip' in message
