"""Train state pytree, optimisers (Adam/SGD, TTUR, linear decay over the second half) and EMA.

`TrainState` holds everything a resumed run needs, unreplicated (no device axis); the trainer adds a
device axis for pmap or replicates it over a mesh for shard_map. Frozen networks (the VGG of the
perceptual loss) are not part of it: they are rebuilt from their weight file or seed at start-up.
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ecgan_jax import configuration, losses

log = logging.getLogger(__name__)

PyTree = Any


# ------------------------------------------------------------------ optimisers
def learning_rate_schedule(base_lr: float, num_steps: int, decay_second_half: bool) -> optax.Schedule:
  """`base_lr` for the first half of `num_steps`, then linearly down to 0 at `num_steps` (SPADE's
  `niter_decay`); constant if `decay_second_half` is False. Indexed by optimiser update count."""
  if not decay_second_half:
    return optax.constant_schedule(base_lr)
  half = int(num_steps) // 2
  return optax.join_schedules(
      [optax.constant_schedule(base_lr),
       optax.linear_schedule(base_lr, 0.0, max(int(num_steps) - half, 1))], [half])


def make_optimizer(config: Any, base_lr: float) -> optax.GradientTransformation:
  """config.optim.optimizer ('adam' with b1/b2 from the config, or plain 'sgd') at `base_lr` with
  the second-half linear decay."""
  o = config.optim
  lr = learning_rate_schedule(base_lr, config.train.num_steps, o.decay_second_half)
  if o.optimizer == 'sgd':
    return optax.sgd(lr)
  return optax.adam(lr, b1=o.beta1, b2=o.beta2)


class Optimizers(NamedTuple):
  """One optax transformation per trained network: generator (+ style encoder), discriminator,
  label generator (`optax.set_to_zero()` when the label generator is frozen)."""
  g: optax.GradientTransformation
  d: optax.GradientTransformation
  l: optax.GradientTransformation


def label_generator_trained_online(config: Any) -> bool:
  """True when no converted label-generator checkpoint is configured: G_l is then trained on real
  (image, label) pairs with cross-entropy next to the GAN."""
  return not config.model.label_generator_checkpoint


def make_optimizers(config: Any) -> Optimizers:
  """TTUR: G at config.optim.lr_g, D at config.optim.lr_d (paper: 1e-4 / 4e-4)."""
  o = config.optim
  l_opt = (make_optimizer(config, o.lr_label_generator) if label_generator_trained_online(config)
           else optax.set_to_zero())
  return Optimizers(g=make_optimizer(config, o.lr_g), d=make_optimizer(config, o.lr_d), l=l_opt)


def ema_update(ema: PyTree, params: PyTree, decay: float) -> PyTree:
  """ema <- decay * ema + (1 - decay) * params, leaf-wise (decay 0 copies params)."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


# ------------------------------------------------------------------ state
@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (all leaves are arrays; no device axis).

  g_params:  {'generator': ..., 'style_encoder': ... (multimodal == 'vae' only)}
  g_state:   non-trained variables of the same modules ({'generator': {'batch_stats': ...}, ...}):
             synced BatchNorm statistics and spectral-norm u/sigma
  d_params / d_state: discriminator params / batch_stats (spectral-norm u/sigma)
  l_params / l_state: label generator (SegFormer) params / decode-head batch_stats
  g_opt / d_opt / l_opt: optax states
  ema_params: exponential moving average of g_params (samples and evaluation use it)
  bank:      segmented memory bank of the contrastive loss ({} when contrastive learning is off)
  step:      int32 [] optimisation steps done
  rng:       uint32 [2] base key; step keys are fold_in(rng, step), so resuming is exact
  """
  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  g_state: PyTree
  d_params: PyTree
  d_state: PyTree
  l_params: PyTree
  l_state: PyTree
  g_opt: PyTree
  d_opt: PyTree
  l_opt: PyTree
  ema_params: PyTree
  bank: PyTree


def split_variables(variables: PyTree) -> tuple[PyTree, PyTree]:
  """Flax variables -> (params, every other collection)."""
  variables = flax.core.unfreeze(variables)
  params = variables.pop('params', {})
  return params, variables


def init_module(module: nn.Module, rng: jax.Array, *args, **kwargs) -> tuple[PyTree, PyTree]:
  """`module.init` with 'params', 'noise' and 'dropout' streams; returns (params, other vars)."""
  k_params, k_noise, k_drop = jax.random.split(rng, 3)
  variables = module.init({'params': k_params, 'noise': k_noise, 'dropout': k_drop}, *args, **kwargs)
  return split_variables(variables)


# ------------------------------------------------------------------ networks
class Models(NamedTuple):
  """The Flax modules of one run, built for one `axis_name` (None for init, 'batch' in the step)
  by `setup.build_models`. VGG19 and the label generator take images in [-1, 1].

  style_encoder is None unless config.model.multimodal == 'vae'.
  """
  generator: nn.Module
  discriminator: nn.Module
  label_generator: nn.Module
  vgg: nn.Module
  style_encoder: nn.Module | None


def uses_memory_bank(config: Any) -> bool:
  return bool(config.loss.use_pixel_contrastive)


def init_bank(config: Any) -> PyTree:
  """Empty segmented memory banks, one per contrastive stride: {'s1': MemoryBank, 's4': ...},
  each [C, bank_size, proj_dim] x 2 queues; {} without contrastive learning."""
  if not uses_memory_bank(config):
    return {}
  return {f's{s}': losses.init_memory_bank(configuration.num_classes(config),
                                           int(config.loss.bank_size), int(config.model.proj_dim))
          for s in configuration.contrastive_strides(config)}


def create_train_state(config: Any, rng: jax.Array, models: Models,
                       optimizers: Optimizers) -> TrainState:
  """Initialises every trained network on a 1-example dummy batch (traceable: jit or eval_shape
  it). `models` must be built with axis_name=None (synced BatchNorm cannot init unmapped)."""
  h, w = configuration.image_size(config)
  semantics = jnp.zeros((1, h, w, configuration.semantic_nc(config)), jnp.float32)
  image = jnp.zeros((1, h, w, 3), jnp.float32)
  k_g, k_d, k_l, k_e, k_run = jax.random.split(rng, 5)
  g_params, g_state = {}, {}
  z = None
  if models.style_encoder is not None:
    g_params['style_encoder'], g_state['style_encoder'] = init_module(
        models.style_encoder, k_e, image, train=True)
    z = jnp.zeros((1, int(config.model.z_dim)), jnp.float32)
  g_params['generator'], g_state['generator'] = init_module(models.generator, k_g, semantics, z,
                                                            train=True)
  d_params, d_state = init_module(models.discriminator, k_d, semantics, image, train=True)
  l_params, l_state = {}, {}  # no label generator without the similarity loss (B1..B4)
  if config.loss.use_similarity:
    l_params, l_state = init_module(models.label_generator, k_l, image, train=True)
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=k_run,
      g_params=g_params, g_state=g_state, d_params=d_params, d_state=d_state,
      l_params=l_params, l_state=l_state,
      g_opt=optimizers.g.init(g_params), d_opt=optimizers.d.init(d_params),
      l_opt=optimizers.l.init(l_params),
      ema_params=jax.tree.map(jnp.copy, g_params), bank=init_bank(config))
