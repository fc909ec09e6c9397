"""ECGAN++ networks (Flax Linen, NHWC). VGG19 / SegFormer live in vgg.py / segformer.py."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import configuration as _conf
from ecgan_jax.models.discriminator import (MultiscaleDiscriminator, NLayerDiscriminator,
                                            build_discriminator)
from ecgan_jax.models.class_specific import ClassFusion, ClassSpecificDecoder, segment_ids
from ecgan_jax.models.generator import ECGANGenerator, build_generator
from ecgan_jax.models.layers import SPADE, Conv, Dense, ParamFreeNorm, SPADEResBlock
from ecgan_jax.models.semantics import one_hot_semantics, resize_nearest
from ecgan_jax.models.style_encoder import StyleEncoder, build_style_encoder

__all__ = [
    'Conv', 'Dense', 'ECGANGenerator', 'GENERATOR_PARTS', 'MultiscaleDiscriminator', 'NLayerDiscriminator',
    'ParamFreeNorm', 'SPADE', 'SPADEResBlock', 'StyleEncoder', 'build_discriminator',
    'build_generator', 'build_style_encoder', 'one_hot_semantics',
    'ClassFusion', 'ClassSpecificDecoder', 'count_tree', 'parameter_counts', 'resize_nearest',
    'segment_ids',
]

# Generator sub-module name -> component of the paper (G_t is parameter-free: sigmoid attention).
GENERATOR_PARTS = {
    'trunk': 'E (shared SPADE trunk)',
    'edge_branch': 'G_e (edge branch)',
    'image_branch': 'G_i (image branch)',
    'edge_transfer': 'G_t (attention-guided edge transfer)',
    'semantic_preserving': 'G_s (semantic-preserving module)',
    'class_decoder': 'G_c (class-specific decoder)',
    'class_fusion': 'G_c fusion of I_g into I\'\'',
    'projection_head': 'projection head (contrastive)',
}


def parameter_counts(config: Any) -> dict[str, int]:
  """Parameter counts per component for `config`, from abstract shapes only (jax.eval_shape:
  nothing is allocated or compiled). Keys: the GENERATOR_PARTS values, 'generator total',
  'D (multi-scale discriminator)', 'style encoder' (counted whether or not multimodal='vae')."""
  h, w = _conf.image_size(config)
  sem = jax.ShapeDtypeStruct((1, h, w, _conf.semantic_nc(config)), jnp.float32)
  img = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  rngs = {'params': jax.random.PRNGKey(0), 'noise': jax.random.PRNGKey(0)}

  def count(module, *args):
    params = jax.eval_shape(lambda *a: module.init(rngs, *a, train=False), *args)['params']
    return params, count_tree(params)

  g_params, g_total = count(build_generator(config), sem)
  table = {label: (count_tree(g_params[name]) if name in g_params else 0)
           for name, label in GENERATOR_PARTS.items()}
  table['generator total'] = g_total
  table['D (multi-scale discriminator)'] = count(build_discriminator(config), sem, img)[1]
  table['style encoder'] = count(build_style_encoder(config), img)[1]
  return table


def count_tree(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or shape structs."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
