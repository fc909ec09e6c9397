"""ECGAN++ networks (Flax Linen, NHWC). VGG19 / SegFormer live in vgg.py / segformer.py."""
from ecgan_jax.models.discriminator import (MultiscaleDiscriminator, NLayerDiscriminator,
                                            build_discriminator)
from ecgan_jax.models.generator import (ECGANGenerator, build_generator, check_model_config,
                                        present_classes)
from ecgan_jax.models.layers import SPADE, Conv, Dense, ParamFreeNorm, SPADEResBlock
from ecgan_jax.models.semantics import one_hot_semantics, resize_nearest
from ecgan_jax.models.style_encoder import StyleEncoder, build_style_encoder

__all__ = [
    'Conv', 'Dense', 'ECGANGenerator', 'MultiscaleDiscriminator', 'NLayerDiscriminator',
    'ParamFreeNorm', 'SPADE', 'SPADEResBlock', 'StyleEncoder', 'build_discriminator',
    'build_generator', 'build_style_encoder', 'check_model_config', 'one_hot_semantics',
    'present_classes', 'resize_nearest',
]
