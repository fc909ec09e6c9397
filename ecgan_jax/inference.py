"""Public inference API: a trained checkpoint -> a jitted label map -> image function.

  synth = ecgan_jax.load('runs/synthetic')            # latest step, EMA generator
  out = synth(labels, seed=0)                         # labels int [B, H, W]
  out['image']                                        # I'' float32 [B, H, W, 3] in [-1, 1]

`Synthesizer.__call__` validates the label maps on the host (size, ids), pads the batch to a
multiple of the local device count, shards it over all local devices (params replicated) and runs
one compiled generator call per batch size. Randomness (the VAE / 3D-noise latent z) is drawn per
example from `fold_in(PRNGKey(seed), index)`, where `index` is the example's position in the
caller's collection (default 0..B-1), so results do not depend on batching or device count.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ecgan_jax import configuration
from ecgan_jax.data import classes as classes_lib
from ecgan_jax.data import transforms
from ecgan_jax.models import generate as generate_lib
from ecgan_jax.training import checkpointing
from ecgan_jax.evaluation import samples
from ecgan_jax.training import setup as setup_lib

log = logging.getLogger(__name__)

# Output keys: I'' (final), I' (coarse, before G_s), I'_e (edge map), I_g (class-specific image).
OUTPUTS = {'final': 'image', 'coarse': 'coarse_image', 'edge': 'edge', 'class': 'class_image'}
_AXIS = 'batch'


def config_from_checkpoint(ckpt: checkpointing.Checkpointer,
                           step: int) -> ml_collections.ConfigDict:
  """The config saved with checkpoint `step`, as a ConfigDict."""
  saved = ckpt.restore_config(step)
  if saved is None:
    raise FileNotFoundError(f'Checkpoint step {step} in {ckpt.directory} holds no config: pass the '
                            'config the run was trained with')
  return ml_collections.ConfigDict(configuration.json_tuples(saved))


def class_colors(config: Any) -> np.ndarray:
  """uint8 [num_classes, 3]: the dataset's colours where known (data/classes.py COLORS), else (and
  for the don't-care class) the pseudo-random palette of the training sample grids."""
  palette = samples.label_palette(configuration.num_classes(config)).copy()
  known = classes_lib.COLORS.get(str(config.dataset.name), ())[:int(config.dataset.label_nc)]
  if known:
    palette[:len(known)] = np.asarray(known, np.uint8)
  return palette


class Synthesizer:
  """A restored generator (+ style encoder) and its jitted, sharded forward pass.

  Attributes:
    config: the run's config (from the checkpoint unless given to `load`).
    step: the checkpoint step.
    image_size: (H, W) the label maps must have.
    num_classes: label ids are 0..num_classes-1 (the don't-care class, if any, included).
    class_names: one name per id; palette: uint8 [num_classes, 3] colours for painting/colouring.
    multimodal: 'none' | 'vae' | 'noise3d'; uses_instance: whether an instance map is an input.
    outputs: the keys of OUTPUTS this model produces.
  """

  def __init__(self, config: Any, params: dict, state: dict, step: int):
    """params / state: the generator's (and style encoder's) `TrainState.ema_params` (or
    g_params) and `g_state`, host or device arrays."""
    self.config = config
    self.step = int(step)
    self.image_size = configuration.image_size(config)
    self.num_classes = configuration.num_classes(config)
    self.class_names = classes_lib.class_names(config)
    self.palette = class_colors(config)
    self.multimodal = str(config.model.multimodal)
    self.uses_instance = not bool(config.dataset.no_instance)
    self._models = setup_lib.build_models(config, axis_name=None)
    self.devices = jax.local_devices()
    self._mesh = Mesh(np.asarray(self.devices), (_AXIS,))
    self._sharded = NamedSharding(self._mesh, P(_AXIS))
    self._params, self._state = jax.device_put((params, state), NamedSharding(self._mesh, P()))
    self._forward = jax.jit(self._apply, out_shardings=self._sharded)
    h, w = self.image_size
    probe = jax.eval_shape(self._apply, self._params, self._state,
                           jax.ShapeDtypeStruct((1, h, w), jnp.int32),
                           jax.ShapeDtypeStruct((1, h, w, 1), jnp.float32),
                           jax.ShapeDtypeStruct((1, 2), jnp.uint32), None)
    self.outputs = tuple(k for k, v in OUTPUTS.items() if v in probe)

  # ---------------------------------------------------------------- traced function
  def _apply(self, params: dict, state: dict, label: jax.Array, boundary: jax.Array,
             keys: jax.Array, style: jax.Array | None) -> dict[str, jax.Array]:
    """label int32 [B, H, W], boundary float32 [B, H, W, 1], keys uint32 [B, 2] (one per
    example), style float32 [B, H, W, 3] in [-1, 1] or None -> {'image', 'coarse_image',
    'edge'?, 'class_image'?} float32 [B, H, W, 3] in [-1, 1]. Each example is generated alone
    (vmap), so its latent comes from its own key whatever the batch."""
    def one(lab, bnd, key, sty):
      out, _ = generate_lib.generate(
          self._models, params, state, lab[None], bnd[None] if self.uses_instance else None,
          key=key, train=False, style_image=None if sty is None else sty[None])
      return {k: out[k][0] for k in OUTPUTS.values() if out.get(k) is not None}
    return jax.vmap(one)(label, boundary, keys, style)

  # ---------------------------------------------------------------- validation
  def check_labels(self, label: Any, name: str = 'label map') -> np.ndarray:
    """int [B, H, W] (or [H, W]) -> int32 [B, H, W]; ValueError naming `name` on a wrong size or
    ids outside 0..num_classes-1."""
    label = np.asarray(label)
    if label.ndim == 2:
      label = label[None]
    if label.ndim != 3 or not np.issubdtype(label.dtype, np.integer):
      raise ValueError(f'{name}: expected integer class ids [B, H, W], got {label.dtype} '
                       f'{list(label.shape)}')
    if tuple(label.shape[1:]) != tuple(self.image_size):
      h, w = self.image_size
      raise ValueError(f'{name}: size {label.shape[1]}x{label.shape[2]} (HxW) does not match the '
                       f'model ({h}x{w}); resize it with nearest neighbour first')
    bad = np.unique(label[(label < 0) | (label >= self.num_classes)])
    if bad.size:
      raise ValueError(f'{name}: ids {bad[:8].tolist()}{" ..." if bad.size > 8 else ""} are '
                       f'outside the label space 0..{self.num_classes - 1} of this model')
    return label.astype(np.int32)

  def _style_image(self, style: Any, batch: int) -> np.ndarray:
    style = np.asarray(style)
    if style.ndim == 3:
      style = np.broadcast_to(style[None], (batch, *style.shape))
    if style.shape != (batch, *self.image_size, 3):
      raise ValueError(f'style image: shape {list(style.shape)} does not match '
                       f'[{batch}, {self.image_size[0]}, {self.image_size[1]}, 3]')
    if style.dtype == np.uint8:
      return style.astype(np.float32) / 127.5 - 1.0
    return style.astype(np.float32)

  # ---------------------------------------------------------------- calls
  def _pad(self, x: np.ndarray, n: int) -> jax.Array:
    """Pads axis 0 to n (a multiple of the device count) and shards it over local devices."""
    pad = n - x.shape[0]
    if pad:
      x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return jax.device_put(x, self._sharded)

  @staticmethod
  def example_keys(seed: int, indices: Sequence[int]) -> np.ndarray:
    """uint32 [len(indices), 2]: fold_in(PRNGKey(seed), index), the key of each example."""
    idx = jnp.asarray(np.asarray(list(indices), np.uint32))
    return np.asarray(jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(int(seed)), i))(idx))

  def __call__(self, label: Any, *, instance: Any = None, seed: int = 0, style: Any = None,
               indices: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Generates images for a batch of label maps.

    Args:
      label: int [B, H, W] (or [H, W]) class ids in 0..num_classes-1, at `image_size`.
      instance: optional int [B, H, W] instance ids, or their float [B, H, W, 1] {0, 1} boundary
        map (models trained with instance maps; without one the boundary channel is empty).
      seed: seed of the random style (multimodal models); `indices` (default 0..B-1) number the
        examples, so a map gets the same style in any batch.
      style: optional style image(s) uint8 [B or 1, H, W, 3] (or float in [-1, 1]): z is drawn
        from the style encoder's posterior with the example's key (multimodal='vae' only).
    Returns:
      {'image': I'', 'coarse_image': I', 'edge': I'_e, 'class_image': I_g} (those the model has)
      as float32 numpy [B, H, W, 3] in [-1, 1].
    """
    label = self.check_labels(label)
    b = label.shape[0]
    n = -(-b // len(self.devices)) * len(self.devices)
    boundary = np.zeros((b, *self.image_size, 1), np.float32)
    if instance is not None:
      instance = np.asarray(instance)
      if instance.ndim == 4:  # already a boundary map, as the data pipeline yields it
        boundary = instance.reshape(boundary.shape).astype(np.float32)
      else:
        boundary = np.stack([transforms.instance_boundaries(i)
                             for i in instance.reshape(label.shape)])
    if style is not None:
      if self.multimodal != 'vae':
        raise ValueError(f"a style image needs a model trained with config.model.multimodal='vae' "
                         f'(this one has {self.multimodal!r})')
      style = self._pad(self._style_image(style, b), n)
    keys = self._pad(self.example_keys(seed, range(b) if indices is None else indices), n)
    out = self._forward(self._params, self._state, self._pad(label, n), self._pad(boundary, n),
                        keys, style)
    return {k: np.asarray(v)[:b] for k, v in out.items()}

  def colorize(self, label: np.ndarray) -> np.ndarray:
    """int [..., H, W] -> uint8 [..., H, W, 3] with this model's palette."""
    return self.palette[np.clip(np.asarray(label), 0, self.num_classes - 1)]


def load(workdir: str, step: int | None = None, *, use_ema: bool = True,
         config: Any = None) -> Synthesizer:
  """Restores `workdir/checkpoints/<step>` (latest by default) into a Synthesizer.

  use_ema: the EMA generator (default, as in the sample grids and evaluation) or the raw one.
  config: replaces the config saved in the checkpoint for data and running (its dataset, train and
    eval sections, model.dtype, ...); the networks stay those of the checkpoint, and a warning
    names any `model`, `loss` or `optim` field of `config` that differed.
  FileNotFoundError names the folder when there is no checkpoint.
  """
  directory = os.path.join(os.path.abspath(os.path.expanduser(workdir)), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'No checkpoints folder {directory}: train with launch/train.py '
                            f'--workdir={workdir} first, or pass the right --workdir')
  with checkpointing.Checkpointer(directory, async_checkpointing=False) as ckpt:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f'No finished checkpoint in {directory}')
    if step is None:
      step = steps[-1]
    elif int(step) not in steps:
      raise FileNotFoundError(f'No checkpoint for step {step} in {directory} (steps: {steps})')
    if config is None:
      config = config_from_checkpoint(ckpt, step)
    else:
      config = configuration.with_trained_networks(
          config, ckpt.restore_config(step), f'step {step} of {directory}')
    state = ckpt.restore(setup_lib.build(config).abstract_state(), step=step)
  params = state.ema_params if use_ema else state.g_params
  log.info('Loaded step %d of %s (%s generator)', step, directory, 'EMA' if use_ema else 'raw')
  return Synthesizer(config, params, state.g_state, step)
