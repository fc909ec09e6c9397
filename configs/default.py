"""Default ECGAN++ configuration: every model, loss, optimiser and data field, with its meaning.

Dataset files (`ade20k.py`, `cityscapes.py`, ...) start from `get_config()` here and change what
differs. `get_config(arg)` also takes an ablation preset name `B1`..`B8` (paper Table VI; `B8` is the
full model and the default), e.g. `--config=configs/ade20k.py:B5`.
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# Paper Table VI. Each row adds one component to the previous one.
ABLATIONS = ('B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the full-model default config. `arg` may name an ablation preset (B1..B8)."""
  c = ml_collections.ConfigDict()

  # ---------------------------------------------------------------- data
  c.dataset = ml_collections.ConfigDict()
  # One of: synthetic | ade20k | cityscapes | coco_stuff | celebamask_hq | folder.
  c.dataset.name = 'synthetic'
  # Root folder of the dataset in its shipped layout (unused by `synthetic`).
  c.dataset.root = config_dict.placeholder(str)
  # Folder of ArrayRecord shards written by launch/prepare_data.py; read instead of `root` if set.
  c.dataset.prepared_dir = config_dict.placeholder(str)
  # Number of semantic label ids in the label maps, not counting the don't-care class.
  c.dataset.label_nc = 6
  # If True one extra "don't care" class is appended (id label_nc); 255 in label maps maps to it.
  c.dataset.contain_dontcare_label = False
  # If False an instance-boundary channel is added to the generator/discriminator input.
  c.dataset.no_instance = True
  # Preprocessing: resize_and_crop (ADE20K, COCO) | fixed (Cityscapes) | none.
  c.dataset.preprocess_mode = 'resize_and_crop'
  # Images are resized to a load_size x load_size square, then randomly cropped (resize_and_crop),
  # as in SPADE.
  c.dataset.load_size = 64
  # Width of the training crop in pixels (SPADE convention); height = crop_size / aspect_ratio.
  c.dataset.crop_size = 64
  # Width / height of the generated images (2.0 for Cityscapes).
  c.dataset.aspect_ratio = 1.0
  # Random horizontal flip (applied jointly to image, label, edge and instance).
  c.dataset.flip = True
  # Cache Canny edge maps on disk next to the data (folder name) or not at all (None).
  c.dataset.edge_cache_dir = config_dict.placeholder(str)
  # Number of grain worker processes (0 = read in the main process).
  c.dataset.num_workers = 0
  # Number of validation examples the eval iterator yields (None = the whole split).
  c.dataset.eval_num_examples = config_dict.placeholder(int)
  # Number of examples of the synthetic dataset (split train); the eval split uses a tenth.
  c.dataset.synthetic_size = 512
  # What to do with a broken example: 'error' stops with a message, 'skip' counts and logs it.
  # The start-up check finds most bad examples before anything compiles: it looks at every file's
  # partner, header (size, mode) and end (truncation), and decodes label maps to check their ids:
  # 'sample' (check_labels_sample maps spread over the split), 'all' or 'none'.
  c.dataset.on_bad_example = 'error'
  c.dataset.check_labels = 'sample'
  c.dataset.check_labels_sample = 200
  # Label count of a plain `folder` dataset must be given by the user (label_nc above).
  c.dataset.shuffle_seed = 0

  # --------------------------------------------------------------- model
  c.model = ml_collections.ConfigDict()
  # Generator base width (SPADE ngf). 64 in the paper; tiny configs use 8-16.
  c.model.ngf = 64
  # True in the `tiny` variant (set by make_tiny); informational.
  c.model.tiny = False
  # Extra upsampling depth: normal (5 ups, latent = crop/32) | more (6) | most (7).
  c.model.num_upsampling_layers = 'normal'
  # Hidden width of the SPADE modulation MLP (3x3 conv).
  c.model.spade_hidden = 128
  # Parameter-free normalisation inside SPADE: batch (synced across devices) | instance.
  c.model.param_free_norm = 'batch'
  # Spectral norm placement: reference (as in the SPADE/ECGAN code) | all (every conv, the paper's
  # wording) | none.
  c.model.spectral_norm = 'reference'
  # Channels C of the trunk output F (paper: 64).
  c.model.feature_channels = 64
  # Number n of edge/image feature layers joined by the attention-guided edge transfer G_t.
  c.model.edge_transfer_layers = 3
  # Widths of those n conv layers in G_e and G_i; None derives feature_channels/2, /4, ... (32, 16,
  # 8 for 64). The released ECGAN code hard-codes (32, 16, 8) whatever ngf; () with
  # edge_transfer_layers=0 is SPADE's single output conv (docs/pretrained.md).
  c.model.branch_widths = config_dict.placeholder(tuple)
  # Multi-modal synthesis: none | vae (style encoder + KL) | noise3d (OASIS-style 3D noise).
  c.model.multimodal = 'none'
  # Latent size of the VAE / noise channels.
  c.model.z_dim = 256
  # Width of the projection head's shared L2-normalised embedding space.
  c.model.proj_dim = 128
  # Output strides of the trunk features fed to the projection head (contrastive learning).
  c.model.contrastive_strides = (1, 4, 8, 16)
  # How the class-specific image I_g (G_c, every present class) reaches the output: 'learned' fuses
  # it with G_s's image by per-pixel softmax weights (as LGGAN) into the final I''; 'discriminator'
  # keeps I'' as is and has D judge [S, I_g] as a further fake (weight 1 in D's and G's losses).
  c.model.class_fusion = 'learned'
  # Discriminator: number of scales, layers per scale, base width.
  c.model.num_D = 2
  c.model.n_layers_D = 4
  c.model.ndf = 64
  # Compute dtype: float32 | bfloat16 (params stay float32).
  c.model.dtype = 'float32'
  # Rematerialise (jax.checkpoint) the generator's ResBlocks to save memory.
  c.model.remat = False
  # Convolutions over the one-hot label map (SPADE's shared MLP conv, the trunk's input conv, G_s's
  # first conv, D's first conv at full resolution) as gathers of kernel rows: same result and params, cost independent of the number
  # of classes. Turn off only to feed the generator soft (not one-hot) label maps.
  c.model.onehot_gather = True
  # Label generator G_l: SegFormer variant b0..b5, optional local converted checkpoint (.msgpack or
  # HF .bin/.safetensors). Without a checkpoint G_l is trained online with cross-entropy.
  c.model.label_generator = 'b0'
  c.model.label_generator_checkpoint = config_dict.placeholder(str)
  # Local VGG19 weights (torchvision-layout state_dict .pth/.safetensors or converted .msgpack).
  # Without them the perceptual loss uses a randomly initialised VGG and the log says so.
  c.model.vgg_checkpoint = config_dict.placeholder(str)
  # Warm start: a SPADE / ECGAN checkpoint converted by launch/convert_weights.py (--kind=spade|
  # ecgan). Its generator, discriminator (and style encoder) replace the fresh initialisation of
  # a new run; the ECGAN++ parts it lacks (G_c, projection head, ...) keep theirs. Ignored on resume.
  c.model.init_from = config_dict.placeholder(str)

  # ---------------------------------------------------------------- loss
  c.loss = ml_collections.ConfigDict()
  # Adversarial loss: hinge (released code) | original (paper's log-loss) | ls.
  c.loss.gan_mode = 'hinge'
  # Eq. 9 weights: lambda_c, lambda_s, lambda_l, lambda_f, lambda_p (paper: 1, 1, 1, 10, 10).
  c.loss.lambda_gan = 1.0
  c.loss.lambda_sim = 1.0
  c.loss.lambda_contrastive = 1.0
  c.loss.lambda_feat = 10.0
  c.loss.lambda_vgg = 10.0
  # Eq. 8/9 lambda weighting I'' against I' (paper: 2). The real term in D is weighted lambda + 1.
  c.loss.lambda_refine = 2.0
  # KL weight of the VAE style encoder (multimodal = vae).
  c.loss.lambda_kld = 0.05
  # Weight of the class-specific L1 reconstruction term inside lambda_l's bracket.
  c.loss.lambda_class_l1 = 1.0
  # Similarity loss: chunk size of the pairwise computation, optional random pixel subset (0 = all).
  c.loss.sim_chunk = 1024
  c.loss.sim_num_pixels = 0
  # Contrastive temperature tau.
  c.loss.temperature = 0.07
  # Eq. 5 per-stride weights for strides (1, 4, 8, 16).
  c.loss.scale_weights = (1.0, 0.7, 0.4, 0.1)
  # Eq. 6 cross-scale pairs as (stride_p, stride_q) and their weight.
  c.loss.cross_scale_pairs = ((4, 8), (4, 16))
  c.loss.cross_scale_weight = 0.1
  # Anchors drawn per class per step (static budget, masked) and max classes sampled.
  c.loss.anchors_per_class = 16
  c.loss.max_anchor_classes = 16
  # Segmented memory bank: rows T per class per queue, pixels K enqueued per class per image.
  c.loss.bank_size = 1024
  c.loss.bank_pixels_per_class = 10
  # Negatives drawn from the bank per anchor-class (static).
  c.loss.bank_negatives = 256
  # What crosses devices for the contrastive losses and the bank update (training step):
  # 'anchors': each device draws its anchors/bank rows, then they are all_gathered (memory O(local
  # batch)); 'maps': the embedding maps themselves are all_gathered first, so the sampled set does
  # not depend on how the global batch is split over devices (memory O(global batch)).
  c.loss.contrastive_gather = 'anchors'
  # Anchors evaluated at a time in the contrastive losses (peak memory O(chunk x contrast set)).
  c.loss.contrastive_chunk = 512

  # --------------------------------------------------------------- optim
  c.optim = ml_collections.ConfigDict()
  # adam (paper) | sgd (plain SGD: used by the device-count equivalence test, where Adam magnifies
  # float noise on zero-gradient parameters).
  c.optim.optimizer = 'adam'
  c.optim.lr_g = 1e-4
  c.optim.lr_d = 4e-4
  # Adam betas (paper b1=0, b2=0.999; the released code used b2=0.9).
  c.optim.beta1 = 0.0
  c.optim.beta2 = 0.999
  # Linear decay of both learning rates to 0 over the second half of training.
  c.optim.decay_second_half = True
  # Learning rate of the label generator when trained online.
  c.optim.lr_label_generator = 6e-5
  # EMA decay of the generator copy used for evaluation and samples (0 disables).
  c.optim.ema_decay = 0.999

  # --------------------------------------------------------------- train
  c.train = ml_collections.ConfigDict()
  # Global batch size (all devices of all hosts); must be divisible by the device count.
  c.train.batch_size = 8
  c.train.num_steps = 200_000
  c.train.seed = 0
  # pmap | shard_map
  c.train.parallelism = 'pmap'
  c.train.log_every = 50
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  # Checkpoints kept: the last keep_checkpoints, plus every step divisible by keep_every (0: none)
  # as milestones that rotation never removes (a SIGTERM save cannot push the last one out).
  c.train.keep_checkpoints = 3
  c.train.keep_every = 10_000
  c.train.async_checkpointing = True
  # Stop on a NaN/inf loss (keeping the last good checkpoint).
  c.train.halt_on_nonfinite = True
  # Evaluate the EMA generator with config.eval.metrics every N steps on
  # config.eval.train_num_examples validation images, logged to TensorBoard (0 disables).
  c.train.eval_every = 0

  # ---------------------------------------------------------------- eval
  # launch/evaluate.py and periodic evaluation during training (docs/evaluation.md).
  c.eval = ml_collections.ConfigDict()
  # Metrics to compute: any of fid, kid (FID Inception features), miou (segmenter: mIoU, pixel
  # accuracy, per-class IoU, Cityscapes small objects), lpips_diversity (multimodal models only).
  c.eval.metrics = ('fid', 'kid', 'miou')
  # Validation images evaluated by launch/evaluate.py (None = the whole split).
  c.eval.num_examples = config_dict.placeholder(int)
  # Validation images used by periodic evaluation during training (train.eval_every).
  c.eval.train_num_examples = 64
  # Global evaluation batch size (divisible by the device count).
  c.eval.batch_size = 8
  # pytorch-fid's pt_inception-2015-12-05-*.pth or a converted .msgpack. Without it FID/KID use a
  # RANDOMLY INITIALISED Inception (the log says so): numbers only comparable within a run.
  c.eval.inception_checkpoint = config_dict.placeholder(str)
  # pytorch-fid-format .npz (mu, sigma) of the real validation images at the eval resolution; if
  # unset they are computed from the split and written to workdir/eval/fid_stats_<N>.npz.
  c.eval.fid_stats = config_dict.placeholder(str)
  # KID: random subsets and subset size (capped at the number of images).
  c.eval.kid_subsets = 100
  c.eval.kid_subset_size = 1000
  # Segmenter for mIoU / accuracy: a name in ecgan_jax.evaluation.evaluators.SEGMENTERS (segformer),
  # its variant and a local checkpoint (HF SegFormer folder/.bin/.safetensors or converted .msgpack).
  # Without a checkpoint the segmenter is RANDOMLY INITIALISED and the log says so.
  c.eval.segmenter = 'segformer'
  c.eval.segmenter_variant = 'b0'
  c.eval.segmenter_checkpoint = config_dict.placeholder(str)
  # LPIPS for the diversity score: backbone alex | vgg, backbone weights (torchvision-layout
  # state_dict, a full lpips state_dict or a converted .msgpack) and the lpips package's linear heads.
  c.eval.lpips_net = 'alex'
  c.eval.lpips_checkpoint = config_dict.placeholder(str)
  c.eval.lpips_heads = config_dict.placeholder(str)
  # LPIPS diversity (OASIS protocol): label maps used and samples per map.
  c.eval.diversity_maps = 50
  c.eval.diversity_samples = 20
  # Write every generated image as PNG plus index.html (launch/evaluate.py).
  c.eval.write_images = True
  c.eval.seed = 0

  c.ablation = 'B8'
  return apply_args(c, arg)


def apply_args(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies the comma-separated `--config=file.py:ARGS` tokens: an ablation preset (B1..B8) and/or
  `tiny` (a few-channel model for tests and shape checks). Unknown tokens are an error."""
  tokens = [t.strip() for t in (arg or '').split(',') if t.strip()]
  ablation = 'B8'
  for t in tokens:
    if t.upper() in ABLATIONS:
      ablation = t.upper()
    elif t == 'tiny':
      make_tiny(c)
    else:
      raise ValueError(
          f'Unknown config argument {t!r}: expected an ablation preset ({", ".join(ABLATIONS)}) '
          "or 'tiny'")
  return apply_ablation(c, ablation)


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks widths and steps for unit tests and CPU shape checks; keeps the dataset geometry."""
  c.model.ngf = 8
  c.model.ndf = 8
  c.model.spade_hidden = 16
  c.model.feature_channels = 8
  c.model.z_dim = 16
  c.model.proj_dim = 16
  c.model.num_D = 2
  c.model.n_layers_D = 3
  c.loss.bank_size = 32
  c.loss.bank_pixels_per_class = 4
  c.loss.bank_negatives = 16
  c.loss.anchors_per_class = 4
  c.loss.max_anchor_classes = 4
  c.loss.sim_chunk = 256
  c.train.batch_size = 8
  c.train.num_steps = 4
  c.train.log_every = 1
  c.train.sample_every = 2
  c.train.checkpoint_every = 2
  c.train.keep_every = 2
  c.optim.ema_decay = 0.9
  # A one-block-per-stage SegFormer as G_l and segmenter: b0 is a quarter of the step's program.
  c.model.label_generator = 'tiny'
  c.eval.segmenter_variant = 'tiny'
  c.model.tiny = True
  return c


def apply_ablation(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Switches components off to reproduce row `name` (B1..B8) of the paper's Table VI, in place."""
  name = name.upper()
  if name not in ABLATIONS:
    raise ValueError(f"Unknown ablation preset {name!r}: expected one of {', '.join(ABLATIONS)}")
  level = ABLATIONS.index(name) + 1
  c.ablation = name
  c.model.use_edge = level >= 2           # B2: G_e
  c.model.use_edge_transfer = level >= 3  # B3: G_t
  c.model.use_semantic_preserving = level >= 4  # B4: G_s
  c.loss.use_similarity = level >= 5      # B5: G_l + Eq. 2
  c.loss.use_pixel_contrastive = level >= 6  # B6: Eq. 4 + class-specific generation G_c
  c.model.use_class_specific = level >= 6
  c.loss.use_multiscale = level >= 7      # B7: Eq. 5
  c.loss.use_cross_scale = level >= 8     # B8: Eq. 6
  return c
