"""Confusion matrix, mIoU / accuracy / per-class IoU, the Cityscapes small-object subset and the
dataset -> segmenter label mappings."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ade20k, cityscapes, synthetic
from ecgan_jax.evaluation import segmentation as seg


def _cm(label, pred, c):
  return np.asarray(seg.confusion_matrix(jnp.asarray(label), jnp.asarray(pred), c))


def test_hand_computed_confusion_matrix_gives_hand_computed_miou_and_accuracy():
  label = np.array([[0, 0, 1, 1], [2, 2, 2, 1]])
  pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
  cm = _cm(label, pred, 3)
  # rows = truth: class 0: (0->0, 0->1); class 1: (1->1, 1->1, 1->2); class 2: (2->2, 2->0, 2->2)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 1], [1, 0, 2]])
  s = seg.scores_from_confusion(cm)
  # IoU_0 = 1 / (2 + 2 - 1) = 1/3; IoU_1 = 2 / (3 + 3 - 2) = 1/2; IoU_2 = 2 / (3 + 3 - 2) = 1/2
  np.testing.assert_allclose(s['per_class_iou'], [1 / 3, 1 / 2, 1 / 2])
  assert s['miou'] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
  assert s['accuracy'] == pytest.approx(5 / 8)


def test_perfect_segmenter_gives_miou_and_accuracy_one():
  label = np.random.default_rng(0).integers(0, 5, (2, 16, 16))
  s = seg.scores_from_confusion(_cm(label, label, 5))
  assert s['miou'] == 1.0 and s['accuracy'] == 1.0


def test_ignore_pixels_never_count():
  rng = np.random.default_rng(1)
  label = rng.integers(0, 4, (2, 8, 8))
  pred = rng.integers(0, 4, (2, 8, 8))
  masked = label.copy()
  masked[:, :3] = seg.IGNORE
  masked[:, 5:, :2] = 99  # out of range ids are ignored too
  cm = _cm(masked, pred, 4)
  keep = (masked >= 0) & (masked < 4)
  assert cm.sum() == keep.sum()
  np.testing.assert_array_equal(cm, _cm(label[keep], pred[keep], 4))
  # whatever the predictions on ignored pixels are, the matrix does not change
  pred2 = np.where(keep, pred, (pred + 1) % 4)
  np.testing.assert_array_equal(cm, _cm(masked, pred2, 4))


def test_absent_classes_are_nan_and_left_out_of_the_mean():
  cm = np.array([[4, 0, 0], [0, 0, 0], [0, 0, 2]])
  s = seg.scores_from_confusion(cm, names=('a', 'b', 'c'))
  assert np.isnan(s['per_class_iou'][1]) and s['miou'] == 1.0 and np.isnan(s['iou/b'])


def test_eight_devices_give_the_same_matrix_as_one():
  assert jax.local_device_count() == 8
  rng = np.random.default_rng(2)
  label = rng.integers(-1, 7, (8, 2, 12, 12))
  pred = rng.integers(0, 6, (8, 2, 12, 12))
  one = _cm(label, pred, 6)
  fn = jax.pmap(functools.partial(seg.confusion_matrix, num_classes=6, axis_name='batch'),
                axis_name='batch')
  many = np.asarray(fn(jnp.asarray(label), jnp.asarray(pred)))
  for d in range(8):
    np.testing.assert_array_equal(many[d], one)
  np.testing.assert_array_equal(seg.sum_over_processes(one), one)


def test_cityscapes_ids_map_to_19_train_ids_and_small_objects_are_reported():
  config = cityscapes.get_config()
  m = seg.mapping_for_config(config)
  assert m.num_classes == 19 and len(m.lut) == 36
  ids = np.array([7, 8, 26, 33, 0, 1, 6, 34, 35, -1, 200])
  np.testing.assert_array_equal(m(ids), [0, 1, 13, 18, -1, -1, -1, -1, -1, -1, -1])
  assert m(jnp.asarray(ids)).tolist() == m(ids).tolist()  # same on device
  assert sorted(np.unique(m.lut[m.lut >= 0]).tolist()) == list(range(19))
  # Table V names: pole, light, sign, rider, motorbike, bike
  assert [m.names[c] for _, c in m.small_objects] == [
      'pole', 'traffic light', 'traffic sign', 'rider', 'motorcycle', 'bicycle']
  cm = np.eye(19, dtype=np.int64) * 10
  cm[5, 5], cm[5, 0] = 1, 3  # pole: IoU 1/4
  s = seg.scores_from_confusion(cm, m.names, m.small_objects)
  assert s['iou_small/pole'] == pytest.approx(0.25)
  assert s['small_object_miou'] == pytest.approx((0.25 + 5) / 6)


def test_ade20k_151_channels_map_to_150_segmenter_classes_with_dont_care_ignored():
  m = seg.mapping_for_config(ade20k.get_config())
  assert m.num_classes == 150 and len(m.lut) == 151
  np.testing.assert_array_equal(m(np.array([0, 1, 149, 150])), [0, 1, 149, seg.IGNORE])


def test_synthetic_without_dont_care_is_the_identity():
  m = seg.mapping_for_config(synthetic.get_config())
  assert m.num_classes == 6
  np.testing.assert_array_equal(m(np.arange(6)), np.arange(6))


def test_two_processes_of_four_devices_give_the_same_matrix_as_one_device(tmp_path):
  """psum inside a multi-process pmap and the host-side sum over processes both give the
  single-device matrix (2 processes x 4 CPU devices, gloo over 127.0.0.1)."""
  import json  # pylint: disable=import-outside-toplevel

  from tests.training import helpers  # pylint: disable=import-outside-toplevel
  env = helpers.subprocess_env(4)
  with helpers.reserved_port() as port:
    outs = helpers.run_together(
        [(['tests/evaluation/confusion_worker.py', str(i), '2', str(port)], env) for i in range(2)],
        str(tmp_path / 'worker'), timeout=600)
  rng = np.random.default_rng(2)
  label, pred = rng.integers(-1, 7, (8, 2, 12, 12)), rng.integers(0, 6, (8, 2, 12, 12))
  one = _cm(label, pred, 6)
  assert one.sum() > 0
  for out in outs:
    (line,) = [l for l in out.splitlines() if l.startswith('RESULT ')]
    result = json.loads(line[len('RESULT '):])
    np.testing.assert_array_equal(np.asarray(result['psum']), one)
    np.testing.assert_array_equal(np.asarray(result['host_sum']), one)
