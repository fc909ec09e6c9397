"""Cityscapes: 35 label ids + don't-care, instance boundaries, fixed 512x256 (WxH), no crop.

Usage: `--config=configs/cityscapes.py` (add `:B1`..`:B8` or `:tiny`).
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.dataset.name = 'cityscapes'
  c.dataset.label_nc = 35
  c.dataset.contain_dontcare_label = True
  c.dataset.no_instance = False
  c.dataset.preprocess_mode = 'fixed'
  c.dataset.load_size = 512
  c.dataset.crop_size = 512
  c.dataset.aspect_ratio = 2.0
  c.train.batch_size = 16
  c.train.num_steps = 2_975 * 200 // 16  # 200 epochs of the 2,975 training images
  return default.apply_args(c, arg)
