"""Evaluators built from the config, big_vision style.

Each evaluator takes a predict function and an iterator of host batches and returns a dict of
metrics: `evaluator.run(predict_fn, batches) -> {name: value}`. Batches are the eval pipeline's
`[local devices, B / devices, ...]` arrays with a 'valid' mask (padding never counts); predict_fn
maps such a batch to `{'image': I'' [devices, B / devices, H, W, 3]}` (a pmapped generator call).
Several evaluators can share one pass over the data through `evaluate_all`, so the images are
generated once. Device work is pmapped over the local devices; segmentation counts are psum'd over
every device of every process, Inception features are gathered across processes on the host.

The networks come from local checkpoints named in config.eval; without one an evaluator runs with
random weights and logs a loud warning (numbers are then only comparable within one run).
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Iterable, Mapping, Protocol

import flax
import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import _runtime, configuration
from ecgan_jax.evaluation import diversity, fid, segmentation
from ecgan_jax.models import inception, lpips, segformer

log = logging.getLogger(__name__)

METRICS = ('fid', 'kid', 'miou', 'lpips_diversity')
AXIS = 'batch'
PredictFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, jax.Array]]


class Evaluator(Protocol):
  """reset() before a pass, update() once per batch, result() at the end; `run` does all three."""
  name: str

  def reset(self) -> None:
    ...

  def update(self, batch: Mapping[str, np.ndarray], outputs: Mapping[str, jax.Array]) -> None:
    ...

  def result(self) -> dict[str, float]:
    ...


def run(evaluator: Any, predict_fn: PredictFn, batches: Iterable[Mapping[str, np.ndarray]]
        ) -> dict[str, float]:
  """The big_vision contract: predict every batch, feed the evaluator, return its metrics."""
  return evaluate_all([evaluator], predict_fn, batches)


def evaluate_all(evaluators: list[Any], predict_fn: PredictFn,
                 batches: Iterable[Mapping[str, np.ndarray]],
                 on_batch: Callable[[Mapping, Mapping], None] | None = None) -> dict[str, float]:
  """One pass: predict each batch once and feed every evaluator; returns the merged metrics.
  `on_batch(batch, outputs)` is called after each batch (the runner writes images there)."""
  for e in evaluators:
    e.reset()
  for batch in batches:
    outputs = predict_fn(batch)
    for e in evaluators:
      e.update(batch, outputs)
    if on_batch is not None:
      on_batch(batch, outputs)
  merged: dict[str, float] = {}
  for e in evaluators:
    merged.update(e.result())
  return merged


def warn_random(what: str, field: str) -> None:
  log.warning('%s: NO weights given (config.eval.%s); using a RANDOMLY INITIALISED network. '
              'Its numbers are only comparable within this run, NOT with published results.',
              what, field)


def replicate(tree: Any) -> Any:
  """Pytree -> [local devices, ...] copies for a pmap over the local devices. Stacked on the host:
  flax's replicate of jax.Arrays compiles a stack and a reshard for every leaf shape (~150 small
  programs, 15 s of a 2-core ecgan-evaluate start for the micro generator; numpy leaves: none)."""
  return flax.jax_utils.replicate(jax.tree.map(np.asarray, tree))


def _valid(batch: Mapping[str, np.ndarray]) -> np.ndarray:
  label = np.asarray(batch['label'])
  return np.asarray(batch.get('valid', np.ones(label.shape[:2], bool)), bool)


def _all_processes(x: np.ndarray) -> np.ndarray:
  """[N, ...] per process -> [sum N, ...] concatenated over processes (process order)."""
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  gathered = np.asarray(multihost_utils.process_allgather(x))
  return gathered.reshape((-1,) + x.shape[1:])


# ------------------------------------------------------------------------------------ FID / KID
def build_inception(config: Any) -> tuple[inception.FIDInceptionV3, dict, bool]:
  """(model, variables, pretrained) from config.eval.inception_checkpoint, else random init."""
  model = inception.FIDInceptionV3()
  path = config.eval.get('inception_checkpoint')
  if path:
    from ecgan_jax.convert import inception as convert_inception  # pylint: disable=import-outside-toplevel
    log.info('FID Inception: weights from %s', path)
    return model, convert_inception.load_inception_params(path), True
  warn_random('FID Inception-v3', 'inception_checkpoint')
  x = jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3))
  variables = _runtime.jit_run_once(model.init)(jax.random.PRNGKey(int(config.eval.seed)), x)
  return model, variables, False


class FIDEvaluator:
  """FID (and KID) of I'' against the real validation images of the same batches (or the cached
  statistics config.eval.fid_stats). Features: pool3 of the FID Inception, float32 on device,
  statistics float64 on the host."""
  name = 'fid'

  def __init__(self, config: Any, *, kid: bool = True, fid_score: bool = True,
               stats_dir: str | None = None):
    self.config, self.kid, self.fid_score, self.stats_dir = config, kid, fid_score, stats_dir
    model, variables, self.pretrained = build_inception(config)
    self._variables = replicate(variables)
    self._features = jax.pmap(lambda v, x: model.apply(v, x), axis_name=AXIS)
    self.stats_path = config.eval.get('fid_stats')
    self._need_real = kid or not self.stats_path
    self.reset()

  def reset(self) -> None:
    self._fake, self._real, self._valid = [], [], []

  def update(self, batch, outputs):
    valid = _valid(batch)
    self._valid.append(valid.reshape(-1))
    self._fake.append(np.asarray(self._features(self._variables, outputs['image'])).reshape(
        -1, inception.FEATURE_DIM))
    if self._need_real:
      self._real.append(np.asarray(self._features(self._variables, batch['image'])).reshape(
          -1, inception.FEATURE_DIM))

  def result(self) -> dict[str, float]:
    valid = _all_processes(np.concatenate(self._valid))
    fake = _all_processes(np.concatenate(self._fake))[valid]
    out: dict[str, float] = {}
    real = _all_processes(np.concatenate(self._real))[valid] if self._need_real else None
    if self.fid_score:
      if self.stats_path:
        mu_r, sigma_r = fid.load_statistics(self.stats_path)
      else:
        mu_r, sigma_r = fid.feature_statistics(real)
        if self.stats_dir and jax.process_index() == 0 and self.pretrained:
          path = os.path.join(self.stats_dir, f'fid_stats_val_{len(real)}.npz')
          fid.save_statistics(path, mu_r, sigma_r)
          log.info('FID: statistics of %d real images written to %s (reuse with '
                   '--config.eval.fid_stats=%s)', len(real), path, path)
      if mu_r.shape != (inception.FEATURE_DIM,):
        raise ValueError(f'config.eval.fid_stats={self.stats_path!r} holds {mu_r.shape} means; '
                         f'expected {inception.FEATURE_DIM} (pool3 features)')
      out['fid'] = fid.frechet_distance(*fid.feature_statistics(fake), mu_r, sigma_r)
    if self.kid:
      e = self.config.eval
      out['kid'], out['kid_std'] = fid.kernel_inception_distance(
          fake, real, int(e.kid_subsets), int(e.kid_subset_size), int(e.seed))
    out['num_images'] = float(len(fake))
    return out


# ---------------------------------------------------------------------------------- segmentation
def _segformer(config: Any, num_classes: int) -> tuple[Callable, Any, bool]:
  """SegFormer segmenter: (apply(variables, images [-1, 1]) -> logits [B, H/4, W/4, C],
  variables, pretrained); the module applies the ImageNet normalisation of HF's checkpoints."""
  path = config.eval.get('segmenter_checkpoint')
  variant = config.eval.get('segmenter_variant', 'b0')
  if path:
    from ecgan_jax.convert import segformer_from_checkpoint  # pylint: disable=import-outside-toplevel
    model, variables = segformer_from_checkpoint(path, variant, normalize_input=True)
    if model.num_labels != num_classes:
      raise ValueError(f'config.eval.segmenter_checkpoint={path!r} predicts {model.num_labels} '
                       f'classes, but the dataset\'s label mapping needs {num_classes}')
    log.info('Segmenter: SegFormer-%s from %s', variant, path)
    pretrained = True
  else:
    warn_random(f'Segmenter SegFormer-{variant}', 'segmenter_checkpoint')
    model = segformer.SegFormer(variant=variant, num_labels=num_classes, normalize_input=True)
    variables = _runtime.jit_run_once(model.init)(jax.random.PRNGKey(int(config.eval.seed)),
                                    jnp.zeros((1, 64, 64, 3)))
    pretrained = False
  return model.apply, variables, pretrained


# name -> builder(config, num_segmenter_classes) -> (apply, variables, pretrained). A new segmenter
# (e.g. DRN-D-105 or UperNet, the paper's) is a Flax module plus a converter registered here.
SEGMENTERS: dict[str, Callable[[Any, int], tuple[Callable, Any, bool]]] = {'segformer': _segformer}


def segment(apply: Callable, variables: Any, images: jnp.ndarray) -> jnp.ndarray:
  """images [B, H, W, 3] in [-1, 1] -> predicted classes int32 [B, H, W] (logits resized
  bilinearly to the image size, then argmax, as HF's semantic post-processing)."""
  logits = apply(variables, images)
  b, h, w, _ = images.shape
  logits = jax.image.resize(logits, (b, h, w, logits.shape[-1]), 'bilinear')
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


class SegmentationEvaluator:
  """mIoU, pixel accuracy, per-class IoU (and Cityscapes small objects) of the segmenter's labels
  of I'' against the input label map, in the segmenter's class space; also on the real images
  (`*_real`: how good the segmenter itself is on this data)."""
  name = 'miou'

  def __init__(self, config: Any):
    self.mapping = segmentation.mapping_for_config(config)
    name = config.eval.get('segmenter', 'segformer')
    if name not in SEGMENTERS:
      raise configuration.ConfigError(
          f'config.eval.segmenter={name!r} is not one of {sorted(SEGMENTERS)}')
    apply, variables, self.pretrained = SEGMENTERS[name](config, self.mapping.num_classes)
    self._variables = replicate(variables)
    c, mapping = self.mapping.num_classes, self.mapping

    def counts(v, label, valid, fake, real):
      gt = jnp.where(valid[:, None, None], mapping(label), segmentation.IGNORE)
      cm = lambda x: segmentation.confusion_matrix(gt, segment(apply, v, x), c, AXIS)  # noqa: E731
      return cm(fake), cm(real)

    self._counts = jax.pmap(counts, axis_name=AXIS)
    self.reset()

  def reset(self) -> None:
    c = self.mapping.num_classes
    self._cm = np.zeros((c, c), np.int64)
    self._cm_real = np.zeros((c, c), np.int64)

  def update(self, batch, outputs):
    fake, real = self._counts(self._variables, batch['label'], _valid(batch), outputs['image'],
                              batch['image'])
    # psum over the pmapped axis spans every device of every process: device 0 holds the total.
    self._cm += np.asarray(fake[0], np.int64)
    self._cm_real += np.asarray(real[0], np.int64)

  @property
  def confusion(self) -> np.ndarray:
    return self._cm

  def result(self) -> dict[str, float]:
    m = self.mapping
    scores = segmentation.scores_from_confusion(self._cm, m.names, m.small_objects)
    real = segmentation.scores_from_confusion(self._cm_real, (), m.small_objects)
    out = {k: v for k, v in scores.items() if k != 'per_class_iou'}
    out.update({'miou_real': real['miou'], 'accuracy_real': real['accuracy']})
    if 'small_object_miou' in real:
      out['small_object_miou_real'] = real['small_object_miou']
    return out


# ------------------------------------------------------------------------------- LPIPS diversity
def build_lpips(config: Any) -> tuple[lpips.LPIPS, dict, bool]:
  net = config.eval.get('lpips_net', 'alex')
  model = lpips.LPIPS(net)
  path = config.eval.get('lpips_checkpoint')
  if path:
    from ecgan_jax.convert import lpips as convert_lpips  # pylint: disable=import-outside-toplevel
    log.info('LPIPS-%s: weights from %s', net, path)
    return model, convert_lpips.load_lpips_params(path, net, config.eval.get('lpips_heads')), True
  warn_random(f'LPIPS-{net}', 'lpips_checkpoint')
  x = jnp.zeros((1, 64, 64, 3))
  variables = _runtime.jit_run_once(model.init)(jax.random.PRNGKey(int(config.eval.seed)), x, x)
  # the package's linear heads are non-negative (distances >= 0)
  variables = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.abs(v) if 'lin' in jax.tree_util.keystr(p) else v, variables)
  return model, variables, False


class DiversityEvaluator:
  """Mean pairwise LPIPS of config.eval.diversity_samples generations per label map, over the first
  config.eval.diversity_maps valid label maps (OASIS protocol). Its predict function is a sampler:
  (labels [D, S, H, W], keys [D]) -> images [D, S, H, W, 3], one latent per row (pmapped)."""
  name = 'lpips_diversity'

  def __init__(self, config: Any, sample_fn: diversity.SampleFn):
    model, variables, self.pretrained = build_lpips(config)
    self.num_maps = int(config.eval.diversity_maps)
    self.num_samples = int(config.eval.diversity_samples)
    score = diversity.make_map_score_fn(sample_fn, functools.partial(model.apply, variables),
                                        self.num_samples)
    self._score = jax.pmap(score, axis_name=AXIS)
    self._seed = int(config.eval.seed) + 1
    self.reset()

  def reset(self) -> None:
    self._key = jax.random.PRNGKey(self._seed)
    self._scores: list[np.ndarray] = []
    self._calls = 0

  def update(self, batch, outputs=None):
    del outputs  # this evaluator generates its own samples
    label, valid = np.asarray(batch['label']), _valid(batch)
    d = label.shape[0]
    for j in range(label.shape[1]):  # one map per device per call
      # the stopping rule counts calls, not valid maps, so every process makes the same pmap calls
      if self._calls * jax.device_count() >= self.num_maps:
        return
      self._key, sub = jax.random.split(self._key)
      keys = jax.random.split(jax.random.fold_in(sub, jax.process_index()), d)
      scores = np.asarray(self._score(label[:, j], keys))
      self._scores.append(scores[valid[:, j]])
      self._calls += 1

  def result(self) -> dict[str, float]:
    scores = _all_processes(np.concatenate(self._scores or [np.zeros((0,))]))
    if jax.process_count() == 1:
      scores = scores[:self.num_maps]
    return {'lpips_diversity': float(np.mean(scores)) if len(scores) else float('nan'),
            'lpips_diversity_maps': float(len(scores))}


def check_metrics(config: Any) -> tuple[str, ...]:
  metrics = tuple(config.eval.metrics)
  bad = [m for m in metrics if m not in METRICS]
  if bad:
    raise configuration.ConfigError(f'config.eval.metrics has unknown names {bad}: expected any of '
                                    f'{list(METRICS)}')
  return metrics


def build_evaluators(config: Any, stats_dir: str | None = None) -> list[Any]:
  """The image evaluators of config.eval.metrics (fid, kid, miou) for `evaluate_all`; LPIPS
  diversity needs a sampler and is built separately (DiversityEvaluator)."""
  metrics = check_metrics(config)
  evaluators: list[Any] = []
  if 'fid' in metrics or 'kid' in metrics:
    evaluators.append(FIDEvaluator(config, kid='kid' in metrics, fid_score='fid' in metrics,
                                   stats_dir=stats_dir))
  if 'miou' in metrics:
    evaluators.append(SegmentationEvaluator(config))
  return evaluators
