"""Train/eval pipelines: batch contract, joint crop/flip, seeds, Orbax resume, process shards,
prepared ArrayRecord data, and skipping bad examples."""
import hashlib
import logging
import os

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import cityscapes as cityscapes_config
from configs import default
from configs import synthetic as synthetic_config
from ecgan_jax.data import pipeline, sources, transforms
from ecgan_jax.data import synthetic
from tests.data import fixtures as fx


def synth(**dataset) -> 'ml_collections.ConfigDict':
  c = synthetic_config.get_config('tiny')
  c.dataset.synthetic_size = 16
  c.dataset.crop_size = 32
  c.dataset.load_size = 32
  c.train.batch_size = 4
  for k, v in dataset.items():
    c.dataset[k] = v
  return c


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.round((image + 1.0) * 127.5).astype(np.uint8)


def test_train_batches_follow_the_contract():
  c = synth()
  b = next(pipeline.make_train_iterator(c, num_local_devices=2, process_index=0, process_count=1))
  assert sorted(b) == ['edge', 'image', 'label']
  assert b['label'].shape == (2, 2, 32, 32) and b['label'].dtype == np.int32
  assert b['image'].shape == (2, 2, 32, 32, 3) and b['image'].dtype == np.float32
  assert b['edge'].shape == (2, 2, 32, 32, 1) and b['edge'].dtype == np.float32
  assert -1.0 <= b['image'].min() and b['image'].max() <= 1.0 and b['image'].std() > 0.1
  assert set(np.unique(b['edge'])) == {-1.0, 1.0}
  assert 0 <= b['label'].min() and b['label'].max() < 6


def test_cityscapes_batches_have_instance_boundaries_and_fixed_geometry(tmp_path):
  fx.cityscapes(str(tmp_path), n=4, h=40, w=80)
  c = cityscapes_config.get_config('tiny')
  c.dataset.root = str(tmp_path)
  c.dataset.crop_size = 64  # 64x32 (WxH), aspect 2, as the 512x256 default
  c.dataset.load_size = 64
  c.model.num_upsampling_layers = 'normal'
  c.train.batch_size = 4
  b = next(pipeline.make_train_iterator(c, 1, 0, 1))
  assert b['label'].shape == (1, 4, 32, 64) and b['image'].shape == (1, 4, 32, 64, 3)
  assert b['instance'].shape == (1, 4, 32, 64, 1) and b['instance'].dtype == np.float32
  assert set(np.unique(b['instance'])) == {0.0, 1.0}
  assert set(np.unique(b['label'])) <= {0, 7, 26, 33, 35}
  assert (b['label'] == 35).any()  # 255 in labelIds -> don't care


def _find_crop(out_img, candidates):
  """(candidate index, y, x, flipped) whose crop of a prepared image equals `out_img`."""
  h, w = out_img.shape[:2]
  for ci, full in enumerate(candidates):
    for flip in (False, True):
      img = out_img[:, ::-1] if flip else out_img
      for y in range(full.shape[0] - h + 1):
        for x in range(full.shape[1] - w + 1):
          if np.array_equal(full[y:y + h, x:x + w], img):
            return ci, y, x, flip
  raise AssertionError('output image is no crop of any prepared example')


def test_random_crop_and_flip_are_joint_across_image_label_edge_and_instance():
  c = synth(preprocess_mode='resize_and_crop', load_size=40, crop_size=32, synthetic_size=8,
            flip=True, no_instance=False)
  geom = transforms.geometry(c, train=True)
  src = synthetic.SyntheticScenes(40, 40, size=8, with_instances=True)
  prepare = transforms.Prepare(geom, use_instance=True, edge_cache=None)
  prepared = [prepare(src[i]) for i in range(8)]
  it = pipeline.make_train_iterator(c, 1, 0, 1)
  seen_offsets, seen_flips = set(), set()
  for batch in take(it, 3):
    for j in range(4):
      out = {k: v[0, j] for k, v in batch.items()}
      ci, y, x, flip = _find_crop(to_uint8(out['image']), [p['image'] for p in prepared])
      f = (lambda a: a[:, ::-1]) if flip else (lambda a: a)
      np.testing.assert_array_equal(out['label'], f(prepared[ci]['label'][y:y + 32, x:x + 32]))
      edge = np.where(f(prepared[ci]['edge'][y:y + 32, x:x + 32]) > 0, 1.0, -1.0)
      np.testing.assert_array_equal(out['edge'][..., 0], edge)
      instance_ids = f(prepared[ci]['instance'][y:y + 32, x:x + 32])
      np.testing.assert_array_equal(out['instance'], transforms.instance_boundaries(instance_ids))
      seen_offsets.add((y, x))
      seen_flips.add(flip)
  assert len(seen_offsets) > 3 and seen_flips == {False, True}


def test_same_seed_same_batches_other_seed_other_order():
  a = take(pipeline.make_train_iterator(synth(), 2, 0, 1), 3)
  b = take(pipeline.make_train_iterator(synth(), 2, 0, 1), 3)
  assert_same_batches(a, b)
  other = take(pipeline.make_train_iterator(synth(shuffle_seed=5), 2, 0, 1), 3)
  assert not all(np.array_equal(x['image'], y['image']) for x, y in zip(a, other))


def test_epochs_are_reshuffled_and_cover_the_data():
  c = synth(flip=False, preprocess_mode='none', synthetic_size=8)
  it = pipeline.make_train_iterator(c, 1, 0, 1)
  digest = lambda b: [hashlib.sha1(im.tobytes()).hexdigest() for im in b['image'][0]]
  epoch1 = sum((digest(b) for b in take(it, 2)), [])
  epoch2 = sum((digest(b) for b in take(it, 2)), [])
  assert len(set(epoch1)) == 8 and set(epoch1) == set(epoch2) and epoch1 != epoch2


def test_resume_from_orbax_checkpoint_yields_the_exact_next_batches(tmp_path):
  c = synth()
  it = pipeline.make_train_iterator(c, 2, 0, 1)
  take(it, 3)
  mngr = ocp.CheckpointManager(str(tmp_path / 'ckpt'), item_names=('data',))
  mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  expected = take(it, 4)
  fresh = pipeline.make_train_iterator(c, 2, 0, 1)
  mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  assert_same_batches(take(fresh, 4), expected)
  mngr.close()


def test_process_shards_are_disjoint_and_cover_the_data():
  c = synth(flip=False, preprocess_mode='none', synthetic_size=12)
  c.train.batch_size = 6  # 3 processes x host batch 2
  digests = []
  for p in range(3):
    it = pipeline.make_train_iterator(c, 1, process_index=p, process_count=3)
    shard = [hashlib.sha1(im.tobytes()).hexdigest() for b in take(it, 2) for im in b['image'][0]]
    assert len(set(shard)) == 4
    digests.append(set(shard))
  assert not (digests[0] & digests[1]) and not (digests[0] & digests[2])
  assert not (digests[1] & digests[2])
  src = synthetic.SyntheticScenes(32, 32, size=12)
  every = {hashlib.sha1((src[i]['image'] / np.float32(127.5) - np.float32(1)).astype(
      np.float32).tobytes()).hexdigest() for i in range(12)}
  assert digests[0] | digests[1] | digests[2] == every


def test_batch_must_split_over_devices_and_processes():
  with pytest.raises(ValueError, match='not divisible by 3 local devices'):
    pipeline.make_train_iterator(synth(), 3, 0, 1)
  with pytest.raises(ValueError, match='not divisible by 3 processes'):
    pipeline.make_train_iterator(synth(), 1, 0, 3)


def test_eval_iterator_is_deterministic_finite_unflipped_and_padded():
  c = synth(synthetic_size=50, flip=True)  # val split: 5 scenes
  batches = list(pipeline.make_eval_iterator(c, 2, 0, 1))
  assert_same_batches(batches, list(pipeline.make_eval_iterator(c, 2, 0, 1)))
  assert len(batches) == 2 and batches[0]['valid'].shape == (2, 2)
  valid = np.concatenate([b['valid'].reshape(-1) for b in batches])
  assert valid.tolist() == [True] * 5 + [False] * 3
  src = synthetic.SyntheticScenes(32, 32, size=5, split='val')
  images = np.concatenate([b['image'].reshape(-1, 32, 32, 3) for b in batches])
  for i in range(5):
    np.testing.assert_array_equal(to_uint8(images[i]), src[i]['image'])
  assert len(list(pipeline.make_eval_iterator(c, 2, 0, 1, num_examples=3))) == 1


def test_eval_over_processes_gives_each_the_same_number_of_batches():
  c = synth(synthetic_size=50)
  per_process = [list(pipeline.make_eval_iterator(c, 1, p, 2, batch_size=4)) for p in range(2)]
  assert [len(b) for b in per_process] == [2, 2]  # host batch 2, 3 and 2 examples, padded
  assert sum(int(b['valid'].sum()) for bs in per_process for b in bs) == 5


def test_eval_resize_and_crop_resizes_to_the_crop_size():
  c = synth(preprocess_mode='resize_and_crop', load_size=40, crop_size=32, synthetic_size=50)
  b = next(pipeline.make_eval_iterator(c, 1, 0, 1))
  assert b['image'].shape == (1, 4, 32, 32, 3)


def test_prepared_array_records_yield_the_same_batches_as_raw_folders(tmp_path):
  fx.cityscapes(str(tmp_path / 'raw'), n=5, h=40, w=80)
  fx.cityscapes(str(tmp_path / 'raw'), n=3, h=40, w=80, split='val')
  c = cityscapes_config.get_config('tiny')
  c.dataset.root = str(tmp_path / 'raw')
  c.dataset.crop_size = 64
  c.dataset.load_size = 64
  c.train.batch_size = 2
  meta = pipeline.prepare_dataset(c, str(tmp_path / 'prepared'), num_shards=2)
  assert meta['train']['num_examples'] == 5 and len(meta['train']['shards']) == 2
  raw_train = take(pipeline.make_train_iterator(c, 1, 0, 1), 5)
  raw_eval = list(pipeline.make_eval_iterator(c, 1, 0, 1))
  c.dataset.prepared_dir = str(tmp_path / 'prepared')
  assert_same_batches(take(pipeline.make_train_iterator(c, 1, 0, 1), 5), raw_train)
  assert_same_batches(list(pipeline.make_eval_iterator(c, 1, 0, 1)), raw_eval)
  c.dataset.crop_size = 32
  with pytest.raises(ValueError, match='load_size_hw'):
    pipeline.make_train_iterator(c, 1, 0, 1)


def test_prepared_synthetic_with_random_crop_matches_raw(tmp_path):
  c = synth(preprocess_mode='resize_and_crop', load_size=40, crop_size=32, synthetic_size=8)
  pipeline.prepare_dataset(c, str(tmp_path), splits=('train',))
  raw = take(pipeline.make_train_iterator(c, 2, 0, 1), 3)
  c.dataset.prepared_dir = str(tmp_path)
  assert_same_batches(take(pipeline.make_train_iterator(c, 2, 0, 1), 3), raw)


def test_edge_cache_gives_the_same_batches(tmp_path):
  c = synth()
  plain = take(pipeline.make_train_iterator(c, 1, 0, 1), 2)
  c.dataset.edge_cache_dir = str(tmp_path / 'edges')
  cold = take(pipeline.make_train_iterator(c, 1, 0, 1), 2)
  warm = take(pipeline.make_train_iterator(c, 1, 0, 1), 2)
  assert_same_batches(cold, plain)
  assert_same_batches(warm, plain)
  cached = os.listdir(tmp_path / 'edges' / 'train')
  assert 8 <= len(cached) <= 16 and all(f.endswith('.png') for f in cached)


def _folder_config(root, on_bad):
  c = default.get_config('tiny')
  c.dataset.name = 'folder'
  c.dataset.root = str(root)
  c.dataset.label_nc = 4
  c.dataset.preprocess_mode = 'fixed'
  c.dataset.crop_size = 32
  c.dataset.load_size = 32
  c.dataset.on_bad_example = on_bad
  c.train.batch_size = 2
  return c


def test_bad_example_stops_training_with_the_file_name(tmp_path):
  fx.folder(str(tmp_path), n=4)
  (tmp_path / 'images' / 'scene_6.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
  with pytest.raises(Exception, match=r'scene_6\.png'):  # found by the start-up check
    take(pipeline.make_train_iterator(_folder_config(tmp_path, 'error'), 1, 0, 1), 4)


def test_bad_examples_are_skipped_counted_and_logged_in_skip_mode(tmp_path, caplog):
  fx.folder(str(tmp_path), n=4)
  (tmp_path / 'images' / 'scene_6.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
  fx.save(str(tmp_path / 'labels' / 'scene_9.png'), np.full((fx.H, fx.W), 7, np.uint8))
  with caplog.at_level(logging.WARNING):
    it = pipeline.make_train_iterator(_folder_config(tmp_path, 'skip'), 1, 0, 1)
    batches = take(it, 3)  # 2 good examples per epoch, 3 epochs
  labels = np.concatenate([b['label'].reshape(-1, 32, 32) for b in batches])
  assert labels.shape == (6, 32, 32) and labels.max() < 4
  assert 'scene_6.png: corrupt or truncated image' in caplog.text
  assert 'scene_9.png: label map contains ids [7]' in caplog.text
  # Left out at start-up, so reported once each over 3 epochs.
  assert caplog.text.count('scene_6.png') == 1 and caplog.text.count('scene_9.png') == 1


def test_all_bad_examples_in_skip_mode_end_with_an_error(tmp_path):
  fx.folder(str(tmp_path), n=2, values=(9,))
  with pytest.raises(Exception, match='every example of the train split'):
    next(pipeline.make_train_iterator(_folder_config(tmp_path, 'skip'), 1, 0, 1))
  config = _folder_config(tmp_path, 'skip')
  config.dataset.check_labels = 'none'  # found only while reading
  it = pipeline.make_train_iterator(config, 1, 0, 1)
  with pytest.raises(Exception, match='every example of this shard'):
    next(it)


def test_two_worker_processes_follow_the_contract_and_resume_exactly():
  c = synth(num_workers=2)
  it = pipeline.make_train_iterator(c, 2, 0, 1)
  first = take(it, 2)
  state = it.get_state()
  expected = take(it, 3)
  it.close()
  assert first[0]['image'].shape == (2, 2, 32, 32, 3) and type(first[0]['image']) is np.ndarray
  resumed = pipeline.make_train_iterator(c, 2, 0, 1)
  resumed.set_state(state)
  assert_same_batches(take(resumed, 3), expected)
  resumed.close()


@pytest.mark.parametrize('name', ['ade20k', 'coco_stuff', 'celebamask_hq', 'folder'])
def test_every_layout_feeds_train_and_eval_batches(tmp_path, name):
  import importlib
  make = {'ade20k': lambda: (fx.ade20k(str(tmp_path), 2), fx.ade20k(str(tmp_path), 2, 'validation')),
          'coco_stuff': lambda: (fx.coco_stuff(str(tmp_path), 2),
                                 fx.coco_stuff(str(tmp_path), 2, 'val2017')),
          'celebamask_hq': lambda: fx.celebamask_hq(str(tmp_path), ids=(0, 1, 28000, 28001)),
          'folder': lambda: fx.folder(str(tmp_path), 2)}
  make[name]()
  if name == 'folder':
    c = _folder_config(tmp_path, 'error')
  else:
    c = importlib.import_module(f'configs.{name}').get_config('tiny')
    c.dataset.root = str(tmp_path)
    c.dataset.crop_size = 32
    c.dataset.load_size = 40 if c.dataset.preprocess_mode == 'resize_and_crop' else 32
  c.train.batch_size = 2
  train = next(pipeline.make_train_iterator(c, 2, 0, 1))
  evals = list(pipeline.make_eval_iterator(c, 2, 0, 1))
  for b in (train, evals[0]):
    assert b['image'].shape == (2, 1, 32, 32, 3) and b['label'].shape == (2, 1, 32, 32)
    assert b['label'].max() < c.dataset.label_nc + int(c.dataset.contain_dontcare_label)
    assert ('instance' in b) == (not c.dataset.no_instance)
  assert sum(int(b['valid'].sum()) for b in evals) == 2
