"""Built-in procedural scenes (no download): the CPU demo and the test suite's dataset.

`--config=configs/synthetic.py` trains a small model at 64x64 on one CPU in minutes;
`--config=configs/synthetic.py:tiny` is the unit-test variant (few channels, a handful of steps).
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.dataset.name = 'synthetic'
  c.dataset.label_nc = 6
  c.dataset.contain_dontcare_label = False
  c.dataset.no_instance = True
  c.dataset.preprocess_mode = 'none'
  c.dataset.load_size = 64
  c.dataset.crop_size = 64
  c.dataset.aspect_ratio = 1.0
  c.dataset.synthetic_size = 512
  # A model small enough for a laptop CPU.
  c.model.ngf = 16
  c.model.ndf = 16
  c.model.spade_hidden = 32
  c.model.feature_channels = 16
  c.model.proj_dim = 32
  c.model.n_layers_D = 3
  c.model.z_dim = 32
  c.loss.bank_size = 128
  c.loss.anchors_per_class = 8
  c.loss.max_anchor_classes = 6
  c.loss.bank_negatives = 64
  c.loss.sim_chunk = 256
  c.train.batch_size = 8
  c.train.num_steps = 300
  c.train.log_every = 25
  c.train.sample_every = 100
  c.train.checkpoint_every = 100
  c.train.keep_every = 100
  c.optim.ema_decay = 0.99
  return default.apply_args(c, arg)
