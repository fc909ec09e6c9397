"""COCO-Stuff: 182 label ids + don't-care, instance maps, 286 -> random crop 256.

Usage: `--config=configs/coco_stuff.py` (add `:B1`..`:B8` or `:tiny`).
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.dataset.name = 'coco_stuff'
  c.dataset.label_nc = 182
  c.dataset.contain_dontcare_label = True
  c.dataset.no_instance = False
  c.dataset.preprocess_mode = 'resize_and_crop'
  c.dataset.load_size = 286
  c.dataset.crop_size = 256
  c.dataset.aspect_ratio = 1.0
  c.train.batch_size = 32
  c.train.num_steps = 118_287 * 100 // 32  # 100 epochs of the 118,287 training images
  return default.apply_args(c, arg)
