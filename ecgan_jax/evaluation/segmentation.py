"""Segmentation metrics of generated images: confusion matrix on device, mIoU / pixel accuracy /
per-class IoU on the host, and the explicit mappings between dataset labels and segmenter classes.

The protocol (SPADE / pix2pixHD): a segmenter labels the generated image I''; its prediction is
compared with the label map the image was generated from, both in the segmenter's class space. Pixels
whose label maps to no segmenter class (don't care, unlabelled, Cityscapes ids without a train id)
are excluded everywhere: they never enter the confusion matrix.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import configuration

IGNORE = -1  # segmenter-space label of a pixel that is never counted

# Cityscapes labelIds 0..33 -> the 19 train ids of the benchmark (cityscapesScripts' labels.py
# table, column trainId); every other id (unlabeled, ego vehicle, ..., license plate) is ignored.
CITYSCAPES_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                             23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_TRAIN_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                          'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                          'truck', 'bus', 'train', 'motorcycle', 'bicycle')
# Paper Table V: the small Cityscapes objects (pole, light, sign, rider, motorbike, bike), train ids.
CITYSCAPES_SMALL_OBJECTS = {'pole': 5, 'light': 6, 'sign': 7, 'rider': 12, 'motorbike': 17,
                            'bike': 18}


@dataclasses.dataclass(frozen=True)
class LabelMapping:
  """Dataset class id -> segmenter class id (or IGNORE).

  lut: int32 [num dataset classes] (the model's classes, don't care included); num_classes: classes
  the segmenter predicts; names: optional segmenter class names; small_objects: name -> segmenter
  class reported separately (Table V).
  """
  name: str
  lut: np.ndarray
  num_classes: int
  names: tuple[str, ...] = ()
  small_objects: tuple[tuple[str, int], ...] = ()

  def __post_init__(self):
    lut = np.asarray(self.lut)
    if lut.ndim != 1 or lut.dtype.kind not in 'iu':
      raise ValueError(f'LabelMapping {self.name}: lut must be a 1-D int array, got {lut.dtype} '
                       f'{lut.shape}')
    if lut.size and (lut.max() >= self.num_classes or lut.min() < IGNORE):
      raise ValueError(f'LabelMapping {self.name}: lut values must lie in [-1, {self.num_classes})')

  def __call__(self, label: Any) -> Any:
    """Dataset labels int [...] -> segmenter labels int32 [...]; ids outside the lut -> IGNORE.
    Works on numpy and (inside jit) on jax arrays."""
    xp = jnp if isinstance(label, jax.Array) else np
    lut = xp.asarray(self.lut, dtype=xp.int32)
    inside = (label >= 0) & (label < lut.shape[0])
    return xp.where(inside, lut[xp.clip(label, 0, lut.shape[0] - 1)], IGNORE).astype(xp.int32)


def identity_mapping(num_classes: int, ignore_label: int | None, name: str = 'identity'
                     ) -> LabelMapping:
  """Dataset classes 0..num_classes-1 are the segmenter's classes except `ignore_label` (don't care),
  which is ignored; the segmenter then predicts num_classes - 1 classes when ignore_label is the
  last id (e.g. ADE20K: our 151 = 150 classes + don't care, SegFormer-ADE20K's 150 classes)."""
  lut = np.arange(num_classes, dtype=np.int32)
  seg_classes = num_classes
  if ignore_label is not None:
    if ignore_label != num_classes - 1:
      raise ValueError(f'identity_mapping: the don\'t-care id {ignore_label} must be the last '
                       f'class ({num_classes - 1})')
    lut[ignore_label] = IGNORE
    seg_classes -= 1
  return LabelMapping(name, lut, seg_classes)


def cityscapes_mapping(num_dataset_classes: int = 36) -> LabelMapping:
  """Our Cityscapes classes (labelIds 0..34 + don't care 35) -> the 19 train ids of Cityscapes
  segmenters (SegFormer / DRN checkpoints are trained on train ids); the rest is ignored."""
  lut = np.full(num_dataset_classes, IGNORE, np.int32)
  for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
    lut[label_id] = train_id
  return LabelMapping('cityscapes labelIds -> trainIds', lut, 19, CITYSCAPES_TRAIN_NAMES,
                      tuple(CITYSCAPES_SMALL_OBJECTS.items()))


def mapping_for_config(config: Any) -> LabelMapping:
  """The label mapping of config.dataset.name: Cityscapes ids -> train ids, otherwise identity with
  the don't-care class (if any) ignored (ADE20K: 150 classes, COCO-Stuff: 182, synthetic: all)."""
  n = configuration.num_classes(config)
  if config.dataset.name == 'cityscapes':
    return cityscapes_mapping(n)
  return identity_mapping(n, configuration.ignore_label(config), config.dataset.name)


# ------------------------------------------------------------------------ device-side accumulation
def confusion_matrix(label: jnp.ndarray, pred: jnp.ndarray, num_classes: int,
                     axis_name: str | None = None) -> jnp.ndarray:
  """int32 [C, C] counts, rows = true class, columns = predicted class (static shape).

  label, pred: int [..., H, W] in segmenter space; pixels whose label is outside [0, C) (IGNORE)
  never count, and neither do predictions outside [0, C). `axis_name`: psum over that mapped axis
  (pmap / shard_map), so every device (and, under a multi-process pmap, every process) gets the
  total.
  """
  chex.assert_equal_shape([label, pred])
  label = label.reshape(-1).astype(jnp.int32)
  pred = pred.reshape(-1).astype(jnp.int32)
  valid = (label >= 0) & (label < num_classes) & (pred >= 0) & (pred < num_classes)
  index = jnp.where(valid, label * num_classes + pred, 0)
  cm = jnp.zeros((num_classes * num_classes,), jnp.int32).at[index].add(valid.astype(jnp.int32))
  cm = cm.reshape(num_classes, num_classes)
  if axis_name is not None:
    cm = jax.lax.psum(cm, axis_name)
  return cm


def sum_over_processes(x: np.ndarray) -> np.ndarray:
  """Host array summed over all JAX processes (identity with one process)."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(np.asarray(x))).sum(axis=0)


# ------------------------------------------------------------------------------- host-side scores
def scores_from_confusion(cm: np.ndarray, names: Sequence[str] = (),
                          small_objects: Sequence[tuple[str, int]] = ()) -> dict[str, Any]:
  """mIoU, pixel accuracy and per-class IoU from a confusion matrix [C, C] (rows = truth).

  IoU_c = TP / (TP + FP + FN); mIoU averages over classes that occur in the ground truth or the
  predictions (union > 0), as SPADE's / DRN's evaluation does; accuracy = trace / total. Returns
  {'miou', 'accuracy', 'per_class_iou': [C] (NaN for absent classes), 'small_object_miou' and
  'iou/<name>' for each small object when given}.
  """
  cm = np.asarray(cm, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f'confusion matrix must be square, got {cm.shape}')
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  with np.errstate(invalid='ignore', divide='ignore'):
    iou = np.where(union > 0, tp / union, np.nan)
  total = cm.sum()
  out: dict[str, Any] = {
      'miou': float(np.nanmean(iou)) if np.any(union > 0) else float('nan'),
      'accuracy': float(tp.sum() / total) if total > 0 else float('nan'),
      'per_class_iou': iou,
  }
  if names:
    out.update({f'iou/{n}': float(v) for n, v in zip(names, iou)})
  if small_objects:
    small = np.array([iou[c] for _, c in small_objects])
    out['small_object_miou'] = float(np.nanmean(small)) if np.any(~np.isnan(small)) else float('nan')
    out.update({f'iou_small/{n}': float(iou[c]) for n, c in small_objects})
  return out
