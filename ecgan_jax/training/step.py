"""The training step: discriminator update, then generator update (Eqs. 7-9), one device's view.

`make_train_step(config, models, optimizers)` returns a pure function
  body(state: TrainState, batch: dict, frozen: dict) -> (TrainState, metrics: dict[str, f32 []])
to be mapped over the device axis 'batch' by `parallel.ParallelStep` (pmap or shard_map). Inside:

  1. G forward once (train mode), kept as a VJP: fakes I', I'', I'_e, class images, embeddings.
  2. D update on [S, I] (weight lambda+1), [S, I'] (1), [S, I''] (lambda) and, with G_e, [S, I_e]
     vs [S, I'_e] (Eqs. 7-8), fakes stopped.
  3. Label generator update (only when it is trained online: cross-entropy on real pairs).
  4. G loss (Eq. 9) with the *updated* D: lambda_c adversarial + lambda_f feature matching +
     lambda_p VGG (each I'_e + I' + lambda I'') + lambda_s similarity (G_l frozen inside it) +
     lambda_l (multi-scale + cross-scale contrastive + class-specific L1) [+ lambda_kld KL];
     its gradient w.r.t. the fakes is pulled back through the stored VJP.
  5. Gradients, metrics and losses are pmean'd over 'batch'; BatchNorm statistics are synced by the
     models themselves; contrastive sets and bank writes are all_gathered, so every replica stays
     identical. Memory bank update, EMA of the generator, step + 1.

Ablation switches (config.model.use_*, config.loss.use_*) remove terms at trace time. Per-device
randomness (noise, pixel subsets) uses fold_in(step key, axis_index); shared randomness (anchor
sampling over gathered sets) uses the step key itself.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ecgan_jax import configuration, losses
from ecgan_jax.models import semantics as semantics_lib
from ecgan_jax.models import vgg as vgg_lib
from ecgan_jax.training import logging_utils, state as state_lib
from ecgan_jax.training.parallel import AXIS

PyTree = Any
FLOAT_OUTPUTS = ('image', 'coarse_image', 'edge', 'class_images', 'class_image', 'embeddings')
GATHER_MODES = ('anchors', 'maps')


def _split_groups(features: list[list[jax.Array]], n: int) -> list[list[list[jax.Array]]]:
  """D outputs on a batch of n concatenated groups -> n copies of the nested list, one per group."""
  return [jax.tree.map(lambda x, i=i: jnp.split(x, n, axis=0)[i], features) for i in range(n)]


def _pmean(tree: PyTree, axis_name: str | None) -> PyTree:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)


def make_train_step(config: Any, models: state_lib.Models, optimizers: state_lib.Optimizers,
                    axis_name: str | None = AXIS) -> Callable:
  """Builds the step body for `config` (all switches static). `models` built with `axis_name`."""
  m, lc = config.model, config.loss
  num_classes = configuration.num_classes(config)
  ignore = configuration.ignore_label(config)
  lam = float(lc.lambda_refine)
  gan_mode = lc.gan_mode
  use_edge = bool(m.use_edge)
  # A term whose weight is 0 is not traced at all, so its network leaves the compiled program
  # (no VGG19 at lambda_vgg = 0; no SegFormer G_l, nor its online training, at lambda_sim = 0).
  use_vgg = state_lib.uses_vgg(config)
  use_sim = state_lib.uses_similarity(config)
  use_contrast = bool(lc.use_pixel_contrastive)
  use_ms = bool(lc.use_multiscale)
  use_cs = bool(lc.use_cross_scale)
  use_class = bool(m.use_class_specific)
  vae = m.multimodal == 'vae'
  train_l = state_lib.label_generator_trained_online(config)
  gather_mode = lc.get('contrastive_gather', 'anchors')
  if gather_mode not in GATHER_MODES:
    raise configuration.ConfigError(
        f'config.loss.contrastive_gather={gather_mode!r} is not one of {list(GATHER_MODES)}')
  strides = tuple(int(s) for s in m.contrastive_strides) if use_ms else (1,)
  weights = tuple(float(w) for w in lc.scale_weights) if use_ms else (1.0,)
  chunk = int(lc.get('contrastive_chunk', 512)) or None
  ema_decay = float(config.optim.ema_decay)
  g_mod, d_mod, l_mod, vgg_mod, e_mod = models

  def d_apply(d_params, d_state, sem, images):
    out, new = d_mod.apply({'params': d_params, **d_state}, sem, images, train=True,
                           mutable=['batch_stats'])
    return out, {**d_state, **new}

  def vgg_fn(frozen):
    return lambda im: vgg_mod.apply({'params': frozen['vgg']}, vgg_lib.imagenet_normalize(im))

  def label_probs(l_params, l_state, image):
    logits = l_mod.apply({'params': l_params, **l_state}, vgg_lib.imagenet_normalize(image),
                         train=False)
    return jax.nn.softmax(logits, axis=-1)

  def _update(prefix, optimizer, grads, opt_state, params, metrics):
    """pmean'd gradients -> optimiser step; records gradient and parameter norms."""
    grads = _pmean(grads, axis_name)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics[f'{prefix}/grad_norm'] = logging_utils.tree_norm(grads)
    metrics[f'{prefix}/param_norm'] = logging_utils.tree_norm(params)
    return params, opt_state

  def body(state: state_lib.TrainState, batch: dict, frozen: dict):
    key = jax.random.fold_in(state.rng, state.step)
    k_shared, k_device = jax.random.split(key)
    if axis_name is not None:
      k_device = jax.random.fold_in(k_device, lax.axis_index(axis_name))
    k_noise, k_z, k_sim, k_drop = jax.random.split(k_device, 4)
    k_ms, k_cs, k_bank = jax.random.split(k_shared, 3)

    label = batch['label']
    image = batch['image']
    real_edge = jnp.broadcast_to(batch['edge'], image.shape)
    sem = semantics_lib.one_hot_semantics(label, num_classes, batch.get('instance'))
    metrics = {}

    # ---------------------------------------------------------- 1. generator forward (VJP)
    def g_forward(g_params):
      z, kl = None, jnp.float32(0.0)
      new_state = dict(state.g_state)
      if vae:
        (mu, logvar), e_new = e_mod.apply(
            {'params': g_params['style_encoder'], **state.g_state['style_encoder']}, image,
            train=True, mutable=['batch_stats'])
        new_state['style_encoder'] = {**state.g_state['style_encoder'], **e_new}
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape)
        kl = losses.kl_divergence(mu, logvar)
      out, g_new = g_mod.apply(
          {'params': g_params['generator'], **state.g_state['generator']}, sem, z, train=True,
          rngs={'noise': k_noise}, mutable=['batch_stats'])
      new_state['generator'] = {**state.g_state['generator'], **g_new}
      fakes = {k: out[k] for k in FLOAT_OUTPUTS}
      fakes['kl'] = kl
      return fakes, ({'class_ids': out['class_ids'], 'class_valid': out['class_valid']}, new_state)

    fakes, g_vjp, (g_aux, g_state) = jax.vjp(g_forward, state.g_params, has_aux=True)

    # ---------------------------------------------------------- 2. discriminator update
    def d_loss_fn(d_params):
      stopped = jax.lax.stop_gradient(fakes)
      groups = [image, stopped['coarse_image'], stopped['image']]
      if use_edge:
        groups += [real_edge, stopped['edge']]
      n = len(groups)
      out, d_state = d_apply(d_params, state.d_state, jnp.concatenate([sem] * n, axis=0),
                             jnp.concatenate(groups, axis=0))
      preds = _split_groups(out, n)
      real = losses.gan_loss(preds[0], True, mode=gan_mode)
      fake1 = losses.gan_loss(preds[1], False, mode=gan_mode)
      fake2 = losses.gan_loss(preds[2], False, mode=gan_mode)
      d_image = (lam + 1.0) * real + fake1 + lam * fake2  # Eq. 8
      terms = {'d/real': real, 'd/fake_coarse': fake1, 'd/fake_final': fake2, 'd/image': d_image}
      d_edge = jnp.float32(0.0)
      if use_edge:
        terms['d/real_edge'] = losses.gan_loss(preds[3], True, mode=gan_mode)
        terms['d/fake_edge'] = losses.gan_loss(preds[4], False, mode=gan_mode)
        d_edge = terms['d/real_edge'] + terms['d/fake_edge']  # Eq. 7
        terms['d/edge'] = d_edge
      total = lc.lambda_gan * (d_image + d_edge)
      terms['d/total'] = total
      return total, (terms, d_state)

    d_grads, (d_terms, d_state) = jax.grad(d_loss_fn, has_aux=True)(state.d_params)
    metrics.update(d_terms)
    d_params, d_opt = _update('d', optimizers.d, d_grads, state.d_opt, state.d_params, metrics)

    # ---------------------------------------------------------- 3. label generator (online)
    l_params, l_state, l_opt = state.l_params, state.l_state, state.l_opt
    if use_sim and train_l:
      def l_loss_fn(params):
        logits, new = l_mod.apply({'params': params, **state.l_state},
                                  vgg_lib.imagenet_normalize(image), train=True,
                                  rngs={'dropout': k_drop}, mutable=['batch_stats'])
        target = losses.downsample_labels(label, logits.shape[1:3])
        valid = losses.valid_label_mask(target, num_classes, ignore)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, target, 0))
        ce = jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
        return ce, {**state.l_state, **new}

      (ce, l_state), l_grads = jax.value_and_grad(l_loss_fn, has_aux=True)(state.l_params)
      metrics['l/cross_entropy'] = ce
      l_params, l_opt = _update('l', optimizers.l, l_grads, state.l_opt, state.l_params, metrics)

    # ---------------------------------------------------------- 4. generator loss (Eq. 9)
    def g_loss_fn(f):
      real_groups = [image] + ([real_edge] if use_edge else [])
      real_out, d_state2 = d_apply(d_params, d_state, jnp.concatenate([sem] * len(real_groups)),
                                   jnp.concatenate(real_groups))
      real_out = jax.lax.stop_gradient(real_out)
      fake_groups = [f['coarse_image'], f['image']] + ([f['edge']] if use_edge else [])
      fake_out, d_state2 = d_apply(d_params, d_state2, jnp.concatenate([sem] * len(fake_groups)),
                                   jnp.concatenate(fake_groups))
      real_f = _split_groups(real_out, len(real_groups))
      fake_f = _split_groups(fake_out, len(fake_groups))
      t = {}
      t['g/gan_coarse'] = losses.gan_loss(fake_f[0], True, for_discriminator=False, mode=gan_mode)
      t['g/gan_final'] = losses.gan_loss(fake_f[1], True, for_discriminator=False, mode=gan_mode)
      gan = t['g/gan_coarse'] + lam * t['g/gan_final']
      fm = (losses.feature_matching_loss(fake_f[0], real_f[0])
            + lam * losses.feature_matching_loss(fake_f[1], real_f[0]))
      if use_edge:
        t['g/gan_edge'] = losses.gan_loss(fake_f[2], True, for_discriminator=False, mode=gan_mode)
        gan += t['g/gan_edge']
        fm += losses.feature_matching_loss(fake_f[2], real_f[1])
      t.update({'g/gan': gan, 'g/feat': fm})
      total = lc.lambda_gan * gan + lc.lambda_feat * fm
      if use_vgg:
        vgg = (losses.perceptual_loss(vgg_fn(frozen), f['coarse_image'], image)
               + lam * losses.perceptual_loss(vgg_fn(frozen), f['image'], image))
        if use_edge:
          vgg += losses.perceptual_loss(vgg_fn(frozen), f['edge'], real_edge)
        t['g/vgg'] = vgg
        total += lc.lambda_vgg * vgg
      if use_sim:
        lp = jax.lax.stop_gradient(l_params)
        k1, k2 = jax.random.split(k_sim)
        sim = sum(losses.similarity_loss(
            label_probs(lp, l_state, f[name]), label, ignore_label=ignore,
            chunk_size=int(lc.sim_chunk), num_pixels=int(lc.sim_num_pixels), key=k)
                  for name, k in (('coarse_image', k1), ('image', k2)))
        t['g/similarity'] = sim
        total += lc.lambda_sim * sim
      contrast = jnp.float32(0.0)
      if use_contrast:
        emb, lab, ax = f['embeddings'], label, axis_name
        if gather_mode == 'maps':
          emb = {k: _gather(v, axis_name) for k, v in emb.items()}
          lab, ax = _gather(label, axis_name), None
        common = dict(num_classes=num_classes, temperature=float(lc.temperature),
                      anchors_per_class=int(lc.anchors_per_class),
                      max_classes=int(lc.max_anchor_classes), ignore_label=ignore, axis_name=ax,
                      chunk_size=chunk)
        t['g/contrastive_ms'] = losses.multiscale_contrastive_loss(
            k_ms, emb, lab, strides=strides, weights=weights, bank=state.bank,
            bank_samples_per_class=int(lc.bank_negatives), **common)
        contrast += t['g/contrastive_ms']
        if use_cs:
          t['g/contrastive_cs'] = losses.cross_scale_contrastive_loss(
              k_ms, emb, lab, pairs=tuple(tuple(p) for p in lc.cross_scale_pairs),
              weights=float(lc.cross_scale_weight), **common)
          contrast += t['g/contrastive_cs']
      if use_class:
        t['g/class_l1'] = losses.class_specific_l1_loss(
            f['class_images'], g_aux['class_ids'], g_aux['class_valid'], image, label)
        contrast += lc.lambda_class_l1 * t['g/class_l1']
      if use_contrast or use_class:
        t['g/contrastive'] = contrast
        total += lc.lambda_contrastive * contrast
      if vae:
        t['g/kld'] = f['kl']
        total += lc.lambda_kld * f['kl']
      t['g/total'] = total
      return total, (t, d_state2)

    (_, (g_terms, d_state)), f_bar = jax.value_and_grad(g_loss_fn, has_aux=True)(fakes)
    (g_grads,) = g_vjp(f_bar)
    metrics.update(g_terms)
    g_params, g_opt = _update('g', optimizers.g, g_grads, state.g_opt, state.g_params, metrics)
    metrics['g/l1_final'] = jnp.mean(jnp.abs(fakes['image'] - image))

    # ---------------------------------------------------------- 5. bank, EMA, bookkeeping
    bank = state.bank
    if use_contrast:
      emb1, lab1, ax = fakes['embeddings']['s1'], label, axis_name
      if gather_mode == 'maps':
        emb1, lab1, ax = _gather(emb1, axis_name), _gather(label, axis_name), None
      bank = losses.update_memory_bank(bank, k_bank, jax.lax.stop_gradient(emb1), lab1,
                                       pixels_per_class=int(lc.bank_pixels_per_class),
                                       ignore_label=ignore, axis_name=ax)
    # Batch statistics need no pmean here: BatchNorm syncs them over `axis_name` itself and the
    # spectral-norm vectors are functions of replicated weights, so replicas stay identical.
    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_state=g_state, d_params=d_params,
        d_state=d_state, l_params=l_params, l_state=l_state, g_opt=g_opt, d_opt=d_opt, l_opt=l_opt,
        ema_params=state_lib.ema_update(state.ema_params, g_params, ema_decay), bank=bank)
    return new_state, _pmean(metrics, axis_name)

  return body
