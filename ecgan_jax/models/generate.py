"""The one call of the ECGAN++ generator: label map (+ style) -> every generator output.

Used by the training step (train=True, kept as a VJP), the training sampler and the inference API
(train=False), so that all of them build the semantic input and the latent z the same way.
"""
from __future__ import annotations

from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecgan_jax.models.semantics import one_hot_semantics

PyTree = Any


class GeneratorModules(Protocol):
  """What `generate` needs of a model bundle (e.g. `training.state.Models`)."""
  generator: nn.Module  # an ECGANGenerator
  style_encoder: nn.Module | None  # a StyleEncoder when config.model.multimodal == 'vae'


def generate(models: GeneratorModules, params: PyTree, state: PyTree, label: jax.Array,
             instance: jax.Array | None = None, *, key: jax.Array, train: bool,
             style_image: jax.Array | None = None) -> tuple[dict[str, Any], PyTree]:
  """Runs G (and the VAE style encoder) on a label map.

  Args:
    models: `.generator` (ECGANGenerator) and `.style_encoder` (StyleEncoder or None).
    params: {'generator': ..., 'style_encoder': ... (VAE only)}: TrainState.g_params or the EMA.
    state: the modules' other variables, same keys ({'generator': {'batch_stats': ...}, ...}).
    label: int [B, H, W] class ids; instance: [B, H, W, 1] boundary map in {0, 1} when the
      generator takes one (dataset.no_instance False).
    key: PRNG key for the latent: the VAE reparameterisation or z ~ N(0, 1) (multimodal modes).
    train: batch statistics and spectral-norm power iterations (state is then updated).
    style_image: [B, H, W, 3] in [-1, 1], encoded to z by the style encoder (VAE only; without it
      z ~ N(0, 1), as SPADE samples at test time).
  Returns:
    (outputs, new_state): the generator's output dict (ECGANGenerator docstring) plus 'style':
    (mu, logvar) [B, z_dim] each when a style image was encoded, else None; new_state equals
    `state` when train is False.
  """
  generator = models.generator
  sem = one_hot_semantics(label, generator.num_classes, instance)
  k_noise, k_z = jax.random.split(key)
  new_state = dict(state)
  z, style = None, None
  if style_image is not None and models.style_encoder is not None:
    variables = {'params': params['style_encoder'], **state['style_encoder']}
    if train:
      style, updates = models.style_encoder.apply(variables, style_image, train=True,
                                                  mutable=['batch_stats'])
      new_state['style_encoder'] = {**state['style_encoder'], **updates}
    else:
      style = models.style_encoder.apply(variables, style_image, train=False)
    mu, logvar = style
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape)
  variables = {'params': params['generator'], **state['generator']}
  if train:
    out, updates = generator.apply(variables, sem, z, train=True, rngs={'noise': k_noise},
                                   mutable=['batch_stats'])
    new_state['generator'] = {**state['generator'], **updates}
  else:
    out = generator.apply(variables, sem, z, train=False, rngs={'noise': k_noise})
  return {**out, 'style': style}, new_state
