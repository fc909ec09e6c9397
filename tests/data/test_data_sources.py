"""Sources in each shipped layout: pairing by name, label conventions, and clear errors on bad input."""
import logging
import os

import numpy as np
import pytest

from ecgan_jax.data import sources
from ecgan_jax.data.transforms import BadExampleError
from tests.data import fixtures as fx


def test_ade20k_pairs_by_name_and_shifts_labels_with_zero_as_dontcare(tmp_path):
  raws = fx.ade20k(str(tmp_path), n=3)
  src = sources.ade20k_source(str(tmp_path), 'train')
  assert len(src) == 3
  for i in range(3):
    ex = src[i]
    raw = raws[ex['key']]
    assert ex['image'].dtype == np.uint8 and ex['image'].shape == (fx.H, fx.W, 3)
    assert ex['label'].dtype == np.int32 and ex['label'].shape == (fx.H, fx.W)
    expected = np.where(raw == 0, 150, raw.astype(np.int32) - 1)
    np.testing.assert_array_equal(ex['label'], expected)
    assert set(np.unique(ex['label'])) <= {0, 1, 76, 149, 150}


def test_ade20k_root_may_be_the_challenge_folder_itself(tmp_path):
  fx.ade20k(str(tmp_path), n=2, split='validation')
  src = sources.ade20k_source(str(tmp_path / 'ADEChallengeData2016'), 'val')
  assert [src[i]['key'] for i in range(2)] == ['ADE_val_00000001', 'ADE_val_00000002']


def test_cityscapes_reads_label_and_instance_ids_and_maps_255_to_dontcare(tmp_path):
  raws = fx.cityscapes(str(tmp_path), n=3)
  src = sources.cityscapes_source(str(tmp_path), 'train', use_instance=True)
  assert sorted(r['key'] for r in src.records) == sorted(raws)
  for i in range(3):
    ex = src[i]
    raw = raws[ex['key']].astype(np.int32)
    np.testing.assert_array_equal(ex['label'], np.where(raw == 255, 35, raw))
    assert ex['instance'].dtype == np.int32
    np.testing.assert_array_equal(ex['instance'], raw * 100 + np.arange(fx.W)[None, :] // 8)


def test_coco_stuff_maps_255_to_182_and_reads_optional_instances(tmp_path):
  raws = fx.coco_stuff(str(tmp_path), n=3)
  with_inst = sources.coco_stuff_source(str(tmp_path), 'train', use_instance=True)
  without = sources.coco_stuff_source(str(tmp_path), 'train', use_instance=False)
  ex = with_inst[1]
  raw = raws[ex['key']].astype(np.int32)
  np.testing.assert_array_equal(ex['label'], np.where(raw == 255, 182, raw))
  assert 'instance' in ex and 'instance' not in without[1]


def test_celebamask_parts_are_painted_in_order_and_split_by_id(tmp_path):
  parts = fx.celebamask_hq(str(tmp_path), ids=(0, 1, 28001))
  train = sources.celebamask_hq_source(str(tmp_path), 'train')
  val = sources.celebamask_hq_source(str(tmp_path), 'val')
  assert [r['key'] for r in train.records] == ['0', '1'] and len(val) == 1
  ex = train[0]
  expected = np.zeros((fx.H, fx.W), np.int32)
  # CelebAMask-HQ's order: skin (1) < l_eye (4) < hair (13); later parts overwrite earlier ones.
  for part in sorted(parts['0'], key=sources.CELEBA_PARTS.index):
    expected[parts['0'][part] > 0] = sources.CELEBA_PARTS.index(part) + 1
  np.testing.assert_array_equal(ex['label'], expected)
  assert set(np.unique(ex['label'])) == {0, 1, 4, 13}
  assert ex['image'].shape == (2 * fx.H, 2 * fx.W, 3)  # masks are half the image size, as shipped


def test_folder_pairs_by_stem_not_by_sort_order(tmp_path):
  n = 4
  raws = fx.folder(str(tmp_path), n=n)
  src = sources.folder_source(str(tmp_path), 'train', label_nc=4)
  for i in range(n):
    ex = src[i]
    seed = n - int(ex['key'].split('_')[1]) // 3
    np.testing.assert_array_equal(ex['image'], fx.noise_image(seed))
    np.testing.assert_array_equal(ex['label'], raws[ex['key']])


def test_folder_prefers_split_subfolders(tmp_path):
  fx.folder(str(tmp_path), n=2, split='train')
  fx.folder(str(tmp_path), n=1, split='val')
  assert len(sources.folder_source(str(tmp_path), 'train', 4)) == 2
  assert len(sources.folder_source(str(tmp_path), 'val', 4)) == 1


# ---------------------------------------------------------------------------- bad input
def test_truncated_image_error_names_the_file(tmp_path):
  fx.folder(str(tmp_path), n=2)
  path = str(tmp_path / 'images' / 'scene_3.png')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  src = sources.folder_source(str(tmp_path), 'train', 4)
  idx = [r['key'] for r in src.records].index('scene_3')
  with pytest.raises(BadExampleError, match=r'scene_3\.png.*corrupt or truncated'):
    src[idx]


def test_truncated_jpeg_error_names_the_file(tmp_path):
  fx.ade20k(str(tmp_path), n=1)
  path = tmp_path / 'ADEChallengeData2016/images/training/ADE_train_00000001.jpg'
  data = path.read_bytes()
  path.write_bytes(data[:len(data) * 2 // 3])
  with pytest.raises(BadExampleError, match=r'ADE_train_00000001\.jpg: corrupt or truncated'):
    sources.ade20k_source(str(tmp_path), 'train')[0]


def test_garbage_image_error_names_the_file(tmp_path):
  fx.folder(str(tmp_path), n=2)
  (tmp_path / 'images' / 'scene_3.png').write_bytes(b'not an image at all')
  src = sources.folder_source(str(tmp_path), 'train', 4)
  with pytest.raises(BadExampleError, match=r'scene_3\.png'):
    src[[r['key'] for r in src.records].index('scene_3')]


def test_label_ids_beyond_label_count_are_rejected_but_255_is_dontcare(tmp_path):
  fx.folder(str(tmp_path), n=1, values=(0, 1, 9, 255))
  with pytest.raises(BadExampleError, match=r'scene_3\.png.*ids \[9, 255\].*label_nc=4'):
    sources.folder_source(str(tmp_path), 'train', 4)[0]
  fx.folder(str(tmp_path), n=1, values=(0, 1, 3, 255))
  ex = sources.folder_source(str(tmp_path), 'train', 4, dontcare=True)[0]
  assert set(np.unique(ex['label'])) <= {0, 1, 3, 4}
  assert (ex['label'] == 4).any()


def test_ade20k_id_above_150_is_rejected(tmp_path):
  fx.ade20k(str(tmp_path), n=1)
  fx.save(str(tmp_path / 'ADEChallengeData2016/annotations/training/ADE_train_00000001.png'),
          np.full((fx.H, fx.W), 151, np.uint8))
  with pytest.raises(BadExampleError, match=r'ADE_train_00000001\.png.*\[151\]'):
    sources.ade20k_source(str(tmp_path), 'train')[0]


def test_rgb_label_map_is_rejected(tmp_path):
  fx.folder(str(tmp_path), n=1)
  fx.save(str(tmp_path / 'labels' / 'scene_3.png'), fx.noise_image(5))
  with pytest.raises(BadExampleError, match=r'scene_3\.png.*RGB colour image.*single-channel'):
    sources.folder_source(str(tmp_path), 'train', 4)[0]


def test_grey_label_saved_as_rgb_with_equal_channels_is_accepted(tmp_path):
  raws = fx.folder(str(tmp_path), n=1)
  raw = raws['scene_3']
  fx.save(str(tmp_path / 'labels' / 'scene_3.png'), np.repeat(raw[..., None], 3, -1))
  np.testing.assert_array_equal(sources.folder_source(str(tmp_path), 'train', 4)[0]['label'], raw)


def test_image_and_label_of_different_sizes_are_rejected(tmp_path):
  fx.folder(str(tmp_path), n=1)
  fx.save(str(tmp_path / 'labels' / 'scene_3.png'), np.zeros((fx.H, fx.W + 2), np.uint8))
  with pytest.raises(BadExampleError, match=rf'scene_3\.png.*{fx.H}x{fx.W + 2}.*{fx.H}x{fx.W}'):
    sources.folder_source(str(tmp_path), 'train', 4)[0]


def test_missing_partner_file_is_reported_by_name(tmp_path):
  fx.cityscapes(str(tmp_path), n=3)
  gone = tmp_path / 'gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png'
  os.remove(gone)
  with pytest.raises(BadExampleError, match=r'bochum_000001_000019_leftImg8bit\.png: no label'):
    sources.cityscapes_source(str(tmp_path), 'train', use_instance=False)


def test_missing_partner_in_skip_mode_is_logged_and_left_out(tmp_path, caplog):
  fx.folder(str(tmp_path), n=3)
  os.remove(tmp_path / 'images' / 'scene_6.png')
  with caplog.at_level(logging.WARNING):
    src = sources.folder_source(str(tmp_path), 'train', 4, on_bad='skip')
  assert sorted(r['key'] for r in src.records) == ['scene_3', 'scene_9']
  assert 'scene_6.png: label file has no image partner' in caplog.text


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'images.*does not exist'):
    sources.folder_source(str(tmp_path), 'train', 4)
  os.makedirs(tmp_path / 'images')
  os.makedirs(tmp_path / 'labels')
  with pytest.raises(FileNotFoundError, match=r'images is empty'):
    sources.folder_source(str(tmp_path), 'train', 4)


def test_two_images_with_the_same_stem_are_rejected(tmp_path):
  fx.folder(str(tmp_path), n=1)
  fx.save(str(tmp_path / 'images' / 'scene_3.jpg'), fx.noise_image(0))
  with pytest.raises(ValueError, match='same name'):
    sources.folder_source(str(tmp_path), 'train', 4)
