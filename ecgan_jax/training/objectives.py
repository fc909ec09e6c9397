"""The ECGAN++ objectives, Eqs. 7-9, as pure functions of network outputs.

Nothing here calls the generator or the discriminator: the step (`step.py`) runs them and hands
over their outputs, so each function reads as the paper's equation. Names of the returned terms
are the metric names the trainer logs ('d/...', 'g/...').

  discriminator_objective(judged, opts)                        Eqs. 7-8
  generator_objective(fakes, batch, judged, opts, ...)         Eq. 9
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ecgan_jax import losses
from ecgan_jax.training.options import StepOptions

DOutput = Sequence[Sequence[jax.Array]]  # per D scale: intermediate features + final logits
Terms = dict[str, jax.Array]


def discriminator_objective(judged: Mapping[str, DOutput], opts: StepOptions
                            ) -> tuple[jax.Array, Terms]:
  """Eq. 8 (image) + Eq. 7 (edge) for D, fakes already stopped.

  judged: D's outputs on [S, I] 'real', [S, I'] 'coarse', [S, I''] 'final', with G_e
  [S, I_e] 'real_edge', [S, I'_e] 'fake_edge', and with class_fusion 'discriminator' [S, I_g]
  'class' (a further fake, weight 1). Returns (lambda_c * (L_image + L_edge [+ L_class]), terms).
  """
  lam, mode = opts.lambda_refine, opts.gan_mode
  t = {'d/real': losses.gan_loss(judged['real'], True, mode=mode),
       'd/fake_coarse': losses.gan_loss(judged['coarse'], False, mode=mode),
       'd/fake_final': losses.gan_loss(judged['final'], False, mode=mode)}
  t['d/image'] = (lam + 1.0) * t['d/real'] + t['d/fake_coarse'] + lam * t['d/fake_final']
  d_edge = jnp.float32(0.0)
  if opts.use_edge:
    t['d/real_edge'] = losses.gan_loss(judged['real_edge'], True, mode=mode)
    t['d/fake_edge'] = losses.gan_loss(judged['fake_edge'], False, mode=mode)
    d_edge = t['d/edge'] = t['d/real_edge'] + t['d/fake_edge']
  d_class = jnp.float32(0.0)
  if opts.judge_class_image:
    d_class = t['d/fake_class'] = losses.gan_loss(judged['class'], False, mode=mode)
  t['d/total'] = opts.lambda_gan * (t['d/image'] + d_edge + d_class)
  return t['d/total'], t


def adversarial_terms(judged: Mapping[str, DOutput], opts: StepOptions) -> Terms:
  """G's side of Eqs. 7-8 and feature matching: 'g/gan' = L(I') + lambda L(I'') [+ L(I'_e)],
  'g/feat' the same weighting of D-feature L1 against the real pair (real features stopped)."""
  lam, mode = opts.lambda_refine, opts.gan_mode
  real = jax.lax.stop_gradient(judged['real'])
  t = {'g/gan_coarse': losses.gan_loss(judged['coarse'], True, for_discriminator=False, mode=mode),
       'g/gan_final': losses.gan_loss(judged['final'], True, for_discriminator=False, mode=mode)}
  gan = t['g/gan_coarse'] + lam * t['g/gan_final']
  feat = (losses.feature_matching_loss(judged['coarse'], real)
          + lam * losses.feature_matching_loss(judged['final'], real))
  if opts.use_edge:
    t['g/gan_edge'] = losses.gan_loss(judged['fake_edge'], True, for_discriminator=False,
                                      mode=mode)
    gan += t['g/gan_edge']
    feat += losses.feature_matching_loss(judged['fake_edge'],
                                         jax.lax.stop_gradient(judged['real_edge']))
  if opts.judge_class_image:
    t['g/gan_class'] = losses.gan_loss(judged['class'], True, for_discriminator=False, mode=mode)
    gan += t['g/gan_class']
    feat += losses.feature_matching_loss(judged['class'], real)
  t.update({'g/gan': gan, 'g/feat': feat})
  return t


def perceptual_term(vgg: Callable, fakes: Mapping[str, Any], image: jax.Array,
                    real_edge: jax.Array, opts: StepOptions) -> jax.Array:
  """VGG loss of I' + lambda I'' against the real image [+ I'_e against the real edge map]."""
  pairs = [(fakes['coarse_image'], image), (fakes['image'], image)]
  if opts.use_edge:
    pairs.append((fakes['edge'], real_edge))
  # One VGG19 call on [I'; I''; I'_e; I; I_e]: I's features once, one network in the program.
  terms = losses.perceptual_losses(vgg, pairs)
  return terms[0] + opts.lambda_refine * terms[1] + sum(terms[2:])


def similarity_term(label_probs: Callable, fakes: Mapping[str, Any], label: jax.Array,
                    key: jax.Array, opts: StepOptions) -> jax.Array:
  """Eq. 2 on I' and I'' (G_l frozen inside: `label_probs` must stop its parameters, and run in
  eval mode, where batch elements are independent: both images go through one call)."""
  k1, k2 = jax.random.split(key)
  coarse, refined = fakes['coarse_image'], fakes['image']
  probs = jnp.split(label_probs(jnp.concatenate([coarse, refined], axis=0)), 2, axis=0)
  return sum(losses.similarity_loss(
      p, label, ignore_label=opts.ignore_label, chunk_size=opts.sim_chunk,
      num_pixels=opts.sim_num_pixels, key=k) for p, k in zip(probs, (k1, k2)))


def contrastive_terms(embeddings: Mapping[str, jax.Array], label: jax.Array, banks: Any,
                      key: jax.Array, opts: StepOptions, axis_name: str | None) -> Terms:
  """Eq. 5 (Eq. 4 at stride 1; stride-s anchors also against banks['s<s>']) and Eq. 6 on the
  projection-head embeddings; with contrastive_gather='maps' the maps are gathered first."""
  if opts.contrastive_gather == 'maps':
    embeddings = {k: losses.gather_across_devices(v, axis_name) for k, v in embeddings.items()}
    label, axis_name = losses.gather_across_devices(label, axis_name), None
  common = dict(num_classes=opts.num_classes, temperature=opts.temperature,
                anchors_per_class=opts.anchors_per_class, max_classes=opts.max_anchor_classes,
                ignore_label=opts.ignore_label, axis_name=axis_name,
                chunk_size=opts.contrastive_chunk)
  t = {'g/contrastive_ms': losses.multiscale_contrastive_loss(
      key, embeddings, label, strides=opts.strides, weights=opts.scale_weights, banks=banks,
      bank_samples_per_class=opts.bank_negatives, **common)}
  if opts.use_cross_scale:
    t['g/contrastive_cs'] = losses.cross_scale_contrastive_loss(
        key, embeddings, label, pairs=opts.cross_scale_pairs, weights=opts.cross_scale_weight,
        **common)
  return t


def generator_objective(fakes: Mapping[str, Any], batch: Mapping[str, jax.Array],
                        judged: Mapping[str, DOutput], opts: StepOptions, *, vgg: Callable,
                        label_probs: Callable | None, banks: Any, key_sim: jax.Array,
                        key_contrast: jax.Array, axis_name: str | None
                        ) -> tuple[jax.Array, Terms]:
  """Eq. 9: lambda_c L_gan + lambda_f L_feat + lambda_p L_vgg + lambda_s L_sim
  + lambda_l (L_ms + L_cs + lambda_class_l1 L_class) [+ lambda_kld KL].

  fakes: generator outputs (`models.generate`); batch: {'image', 'label', 'edge' (broadcast to
  3 channels)}; judged: D's outputs as in `discriminator_objective`, fakes not stopped;
  vgg: images in [-1, 1] -> VGG features; label_probs: image -> G_l class probabilities (None
  without the similarity loss); banks: memory banks {'s1': ..., 's4': ...} (None without
  contrastive learning).
  """
  t = adversarial_terms(judged, opts)
  total = opts.lambda_gan * t['g/gan'] + opts.lambda_feat * t['g/feat']
  if opts.use_vgg:  # not traced at lambda_vgg = 0: no VGG19 in the program
    t['g/vgg'] = perceptual_term(vgg, fakes, batch['image'], batch['edge'], opts)
    total += opts.lambda_vgg * t['g/vgg']
  if opts.use_similarity:
    t['g/similarity'] = similarity_term(label_probs, fakes, batch['label'], key_sim, opts)
    total += opts.lambda_sim * t['g/similarity']
  if opts.use_contrastive or opts.use_class_specific:
    contrast = jnp.float32(0.0)
    if opts.use_contrastive:
      t.update(contrastive_terms(fakes['embeddings'], batch['label'], banks, key_contrast, opts,
                                 axis_name))
      contrast += t['g/contrastive_ms'] + t.get('g/contrastive_cs', 0.0)
    if opts.use_class_specific:
      t['g/class_l1'] = losses.class_specific_l1_loss(
          fakes['class_image'], batch['image'], batch['label'], num_classes=opts.num_classes,
          ignore_label=opts.ignore_label)
      contrast += opts.lambda_class_l1 * t['g/class_l1']
    t['g/contrastive'] = contrast
    total += opts.lambda_contrastive * contrast
  if opts.vae:
    t['g/kld'] = losses.kl_divergence(*fakes['style'])
    total += opts.lambda_kld * t['g/kld']
  t['g/total'] = total
  return total, t
