"""ADE20K (ADEChallengeData2016): 150 classes + don't-care, 286 -> random crop 256, no instances.

Usage: `--config=configs/ade20k.py`, `--config=configs/ade20k.py:B5`, `--config=configs/ade20k.py:tiny`.
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.dataset.name = 'ade20k'
  c.dataset.label_nc = 150
  c.dataset.contain_dontcare_label = True
  c.dataset.no_instance = True
  c.dataset.preprocess_mode = 'resize_and_crop'
  c.dataset.load_size = 286
  c.dataset.crop_size = 256
  c.dataset.aspect_ratio = 1.0
  c.train.batch_size = 32
  c.train.num_steps = 20_210 * 200 // 32  # 200 epochs of the 20,210 training images at batch 32
  return default.apply_args(c, arg)
