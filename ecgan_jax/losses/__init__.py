"""ECGAN++ losses: every term of the paper's Eq. 9 as a pure JAX function.

All take NHWC arrays, compute in float32, return float32 scalars and work under jit, grad, vmap
and pmap. Random parts take an explicit PRNG key; cross-device parts take `axis_name` (None
outside a mapped context). Masked inputs (ignore labels, absent classes, an empty bank) give a
documented masked result, never NaN; wrong shapes, non-integer labels and a non-positive
temperature raise ValueError at trace time.

Adversarial (adversarial.py)
  gan_loss(predictions, target_is_real, *, for_discriminator=True, mode='hinge'|'original'|'ls')
  feature_matching_loss(fake_features, real_features)
  kl_divergence(mu [B,Z], logvar [B,Z], *, reduction='batch_mean'|'sum')
Perceptual (perceptual.py)
  perceptual_loss(vgg_fn, x [B,H,W,3], y [B,H,W,3], *, weights=VGG_WEIGHTS)
  perceptual_losses(vgg_fn, [(x, y), ...], *, weights=VGG_WEIGHTS) -> [scalar, ...] (one vgg call)
Similarity, Eq. 2 (similarity.py)
  similarity_loss(probs [B,h,w,N], labels [B,H,W], *, ignore_label, chunk_size, num_pixels, key)
Contrastive, Eqs. 4-6, and class-specific L1 (contrastive.py)
  pixel_contrastive_loss(anchors [A,D], anchor_labels [A], anchor_valid [A], contrast [K,D],
                         contrast_labels [K], contrast_valid [K], *, temperature, exclude_self,
                         chunk_size)
  multiscale_contrastive_loss(key, embeddings {'s1','s4',..}, labels [B,H,W], *, num_classes, ...)
  cross_scale_contrastive_loss(key, embeddings, labels [B,H,W], *, num_classes, pairs, ...)
  memory_bank_loss(anchors, anchor_labels, anchor_valid, bank, *, temperature, key, ...)
  class_specific_l1_loss(class_image I_g [B,H,W,3], image [B,H,W,3], labels [B,H,W], *,
                         num_classes, ignore_label)
Sampling (sampling.py)
  sample_anchors(key, embeddings [B,H,W,D], labels [B,H,W], *, num_classes, anchors_per_class,
                 max_classes, ignore_label, axis_name) -> Anchors(embeddings, labels, valid)
  downsample_labels(labels [B,H,W], (h, w)), valid_label_mask(labels, num_classes, ignore_label)
  gather_across_devices(x, axis_name): the one all_gather (tiled, axis 0) of the project
Segmented memory bank (memory_bank.py)
  MemoryBank (pytree state), init_memory_bank(num_classes, size, dim),
  update_memory_bank(bank, key, embeddings [B,H,W,D], labels [B,H,W], *, pixels_per_class,
                     ignore_label, axis_name), memory_bank_contrast(bank, key, samples_per_class)

See docs/losses.md for the equations, the decisions where the paper is silent and measurements.
"""
from ecgan_jax.losses.adversarial import GAN_MODES, feature_matching_loss, gan_loss, kl_divergence
from ecgan_jax.losses.contrastive import (CROSS_SCALE_PAIRS, SCALE_WEIGHTS, STRIDES,
                                          class_specific_l1_loss, cross_scale_contrastive_loss,
                                          memory_bank_loss, multiscale_contrastive_loss,
                                          pixel_contrastive_loss, pixel_contrastive_sums,
                                          sample_multiscale_anchors)
from ecgan_jax.losses.memory_bank import (MemoryBank, init_memory_bank, memory_bank_contrast,
                                          update_memory_bank)
from ecgan_jax.losses.perceptual import VGG_WEIGHTS, perceptual_loss, perceptual_losses
from ecgan_jax.losses.sampling import (Anchors, downsample_labels, gather_across_devices,
                                       sample_anchors, valid_label_mask)
from ecgan_jax.losses.similarity import similarity_loss

__all__ = [
    'Anchors', 'CROSS_SCALE_PAIRS', 'GAN_MODES', 'MemoryBank', 'SCALE_WEIGHTS', 'STRIDES',
    'VGG_WEIGHTS', 'class_specific_l1_loss', 'cross_scale_contrastive_loss', 'downsample_labels',
    'feature_matching_loss', 'gan_loss', 'gather_across_devices', 'init_memory_bank',
    'kl_divergence', 'memory_bank_contrast', 'memory_bank_loss', 'multiscale_contrastive_loss',
    'perceptual_loss', 'perceptual_losses',
    'pixel_contrastive_loss', 'pixel_contrastive_sums', 'sample_anchors',
    'sample_multiscale_anchors', 'similarity_loss', 'update_memory_bank', 'valid_label_mask',
]
