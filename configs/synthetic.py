"""Built-in procedural scenes (no download): the CPU demo and the test suite's dataset.

`--config=configs/synthetic.py` trains a small model at 64x64 on one CPU in minutes (600 steps,
about 12 minutes on 2 cores);
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
  c.train.num_steps = 600
  c.train.log_every = 25
  c.train.sample_every = 100
  c.train.checkpoint_every = 100
  c.train.keep_every = 100
  c.optim.ema_decay = 0.99
  c = default.apply_args(c, arg)
  if not c.model.tiny:  # the demo; `tiny` keeps the whole B8 program, which the tests are about
    # No VGG19 weights ship (none are downloaded), and a randomly initialised VGG19 cost two thirds
    # of each step here (2.7 against 0.9 s on 2 cores) for the same L1 at step 300
    # (docs/training.md). With weights, give both: --config.model.vgg_checkpoint=... and
    # --config.loss.lambda_vgg=10.
    c.loss.lambda_vgg = 0.0
    # G_e / G_i widths: F has 16 channels here, so the derived (8, 4, 4) would leave I'_e and I'
    # four channels; at 600 steps I'_e then stayed a grey blur and I' went black, where (16, 16,
    # 16) gives edge-like outlines and a coarse scene (docs/training.md).
    c.model.branch_widths = (16, 16, 16)
  return c
