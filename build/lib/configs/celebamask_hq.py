"""CelebAMask-HQ: 19 face-part classes (0 = background) combined from per-part masks, 256x256.

Usage: `--config=configs/celebamask_hq.py` (add `:B1`..`:B8` or `:tiny`).
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.dataset.name = 'celebamask_hq'
  c.dataset.label_nc = 19
  c.dataset.contain_dontcare_label = False
  c.dataset.no_instance = True
  c.dataset.preprocess_mode = 'fixed'
  c.dataset.load_size = 256
  c.dataset.crop_size = 256
  c.dataset.aspect_ratio = 1.0
  c.train.batch_size = 16
  c.train.num_steps = 28_000 * 100 // 16  # 100 epochs of the 28,000 training images
  return default.apply_args(c, arg)
