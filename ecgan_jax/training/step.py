"""The training step: discriminator update, then generator update (Eqs. 7-9), one device's view.

`make_train_step(opts, models, optimizers)` returns a pure function
  body(state: TrainState, batch: dict, frozen: dict) -> (TrainState, metrics: dict[str, f32 []])
to be mapped over the device axis 'batch' by `parallel.ParallelStep` (pmap or shard_map). It reads
top-down:

  1. G forward once (train mode, `models.generate`), kept as a VJP: I', I'', I'_e, I_g,
     embeddings.
  2. D update: `objectives.discriminator_objective` on D's outputs for [S, I], [S, I'], [S, I'']
     and, with G_e, [S, I_e], [S, I'_e] [and [S, I_g], class_fusion 'discriminator'] (fakes
     stopped).
  3. Label generator update (only when it is trained online: cross-entropy on real pairs).
  4. G update: `objectives.generator_objective` (Eq. 9) with the *updated* D; its gradient w.r.t.
     the fakes is pulled back through the stored VJP.
  5. Memory bank updates (one bank per contrastive stride, each from its own scale), EMA of the
     generator, step + 1.

Gradients, metrics and losses are pmean'd over 'batch'; BatchNorm statistics are synced by the
models themselves; contrastive sets and bank writes are all_gathered, so every replica stays
identical. Per-device randomness (noise, pixel subsets) uses fold_in(step key, axis_index); shared
randomness (anchor sampling over gathered sets) uses the step key itself.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ecgan_jax import losses
from ecgan_jax.models.generate import generate
from ecgan_jax.models.semantics import one_hot_semantics
from ecgan_jax.training import objectives, state as state_lib
from ecgan_jax.training.options import StepOptions
from ecgan_jax.training.parallel import AXIS

PyTree = Any
# Generator outputs that go through the VJP (None where a component is off).
FAKES = ('image', 'coarse_image', 'edge', 'class_image', 'embeddings', 'style')


def _pmean(tree: PyTree, axis_name: str | None) -> PyTree:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


def judge(d_mod, d_params: PyTree, d_state: PyTree, sem: jax.Array,
          groups: Mapping[str, jax.Array]) -> tuple[dict[str, Any], PyTree]:
  """One D call (train mode) on the named image groups [B, H, W, 3] each paired with `sem`,
  concatenated on the batch axis: -> ({name: D outputs of that group}, new d_state)."""
  names, n = list(groups), len(groups)
  out, new = d_mod.apply({'params': d_params, **d_state}, jnp.concatenate([sem] * n, axis=0),
                         jnp.concatenate([groups[k] for k in names], axis=0), train=True,
                         mutable=['batch_stats'])
  return ({k: jax.tree.map(lambda x, i=i: jnp.split(x, n, axis=0)[i], out)
           for i, k in enumerate(names)}, {**d_state, **new})


def tree_norm(tree: PyTree) -> jax.Array:
  """Global L2 norm of a pytree's leaves, f32 []: the value of `optax.tree.norm`, from their
  concatenation. XLA:CPU compiles one reduction kernel per leaf for optax's sum of per-leaf
  norms; over the step's six norms of G, D and G_l that was 1,232 of its 6,595 kernels and about
  6 s of a 67 s compile (docs/performance.md, "Fast start"). The concatenation costs one copy of
  the tree per call."""
  leaves = [jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return jnp.sqrt(jnp.sum(jnp.square(jnp.concatenate(leaves))))


def _update(prefix: str, optimizer: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
            params: PyTree, metrics: dict, axis_name: str | None) -> tuple[PyTree, PyTree]:
  """pmean'd gradients -> optimiser step; records gradient and parameter norms."""
  grads = _pmean(grads, axis_name)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  metrics[f'{prefix}/grad_norm'] = tree_norm(grads)
  metrics[f'{prefix}/param_norm'] = tree_norm(params)
  return params, opt_state


def make_train_step(opts: StepOptions, models: state_lib.Models,
                    optimizers: state_lib.Optimizers, axis_name: str | None = AXIS) -> Callable:
  """Builds the step body (all switches static in `opts`). `models` built with `axis_name`."""

  def body(state: state_lib.TrainState, batch: dict, frozen: dict):
    key = jax.random.fold_in(state.rng, state.step)
    k_shared, k_device = jax.random.split(key)
    if axis_name is not None:
      k_device = jax.random.fold_in(k_device, lax.axis_index(axis_name))
    k_gen, k_sim, k_drop = jax.random.split(k_device, 3)
    k_contrast, k_bank = jax.random.split(k_shared)
    batch = {**batch, 'edge': jnp.broadcast_to(batch['edge'], batch['image'].shape)}
    sem = one_hot_semantics(batch['label'], opts.num_classes, batch.get('instance'))
    metrics = {'train/lr_g': opts.lr_g(state.step), 'train/lr_d': opts.lr_d(state.step)}

    # 1. generator forward, kept as a VJP
    def g_forward(g_params):
      out, g_state = generate(models, g_params, state.g_state, batch['label'],
                              batch.get('instance'), key=k_gen, train=True,
                              style_image=batch['image'] if opts.vae else None)
      return {k: out[k] for k in FAKES}, g_state

    fakes, g_vjp, g_state = jax.vjp(g_forward, state.g_params, has_aux=True)

    # 2. discriminator update
    d_params, d_state, d_opt = _discriminator_update(
        opts, models.discriminator, optimizers.d, state, sem, batch, fakes, metrics, axis_name)

    # 3. label generator (trained online only without a converted checkpoint)
    l_params, l_state, l_opt = state.l_params, state.l_state, state.l_opt
    if opts.use_similarity and opts.train_label_generator:
      l_params, l_state, l_opt = _label_generator_update(
          opts, models.label_generator, optimizers.l, state, batch, k_drop, metrics, axis_name)

    # 4. generator update through the stored VJP, with the updated D
    def g_loss_fn(f):
      judged, new_d_state = _judge_generator(models.discriminator, d_params, d_state, sem, batch,
                                             f, opts)
      total, terms = objectives.generator_objective(
          f, batch, judged, opts,
          vgg=lambda im: models.vgg.apply({'params': frozen['vgg']}, im),
          label_probs=_label_probs(models.label_generator, l_params, l_state),
          banks=state.bank if opts.use_contrastive else None, key_sim=k_sim,
          key_contrast=k_contrast, axis_name=axis_name)
      return total, (terms, new_d_state)

    (_, (g_terms, d_state)), f_bar = jax.value_and_grad(g_loss_fn, has_aux=True)(fakes)
    (g_grads,) = g_vjp(f_bar)
    metrics.update(g_terms)
    g_params, g_opt = _update('g', optimizers.g, g_grads, state.g_opt, state.g_params, metrics,
                              axis_name)
    metrics['g/l1_final'] = jnp.mean(jnp.abs(fakes['image'] - batch['image']))

    # 5. memory bank, EMA, bookkeeping. Batch statistics need no pmean: BatchNorm syncs them over
    # `axis_name` itself and the spectral-norm vectors are functions of replicated weights.
    bank = state.bank
    if opts.use_contrastive:
      bank = _update_banks(opts, bank, k_bank, fakes['embeddings'], batch['label'], axis_name)
    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_state=g_state, d_params=d_params,
        d_state=d_state, l_params=l_params, l_state=l_state, g_opt=g_opt, d_opt=d_opt, l_opt=l_opt,
        ema_params=state_lib.ema_update(state.ema_params, g_params, opts.ema_decay), bank=bank)
    return new_state, _pmean(metrics, axis_name)

  return body


def _discriminator_update(opts, d_mod, optimizer, state, sem, batch, fakes, metrics, axis_name):
  """Eqs. 7-8 on the real pairs and the stopped fakes -> (d_params, d_state, d_opt)."""
  stopped = jax.lax.stop_gradient(fakes)
  groups = {'real': batch['image'], 'coarse': stopped['coarse_image'], 'final': stopped['image']}
  if opts.use_edge:
    groups.update(real_edge=batch['edge'], fake_edge=stopped['edge'])
  if opts.judge_class_image:
    groups['class'] = stopped['class_image']

  def loss_fn(d_params):
    judged, d_state = judge(d_mod, d_params, state.d_state, sem, groups)
    total, terms = objectives.discriminator_objective(judged, opts)
    return total, (terms, d_state)

  grads, (terms, d_state) = jax.grad(loss_fn, has_aux=True)(state.d_params)
  metrics.update(terms)
  d_params, d_opt = _update('d', optimizer, grads, state.d_opt, state.d_params, metrics, axis_name)
  return d_params, d_state, d_opt


def _judge_generator(d_mod, d_params, d_state, sem, batch, fakes, opts):
  """D's outputs for G's loss in ONE call on the real pairs (feature-matching targets) and the
  fakes concatenated, as SPADE does: spectral norm makes one power iteration and the targets and
  the fakes are judged with the same sigma."""
  groups = {'real': batch['image'], 'coarse': fakes['coarse_image'], 'final': fakes['image']}
  if opts.use_edge:
    groups.update(real_edge=batch['edge'], fake_edge=fakes['edge'])
  if opts.judge_class_image:
    groups['class'] = fakes['class_image']
  return judge(d_mod, d_params, d_state, sem, groups)


def _label_probs(l_mod, l_params, l_state) -> Callable:
  """image in [-1, 1] -> G_l's class probabilities, its parameters held fixed (eval mode)."""
  variables = {'params': jax.lax.stop_gradient(l_params), **l_state}
  return lambda image: jax.nn.softmax(l_mod.apply(variables, image, train=False), axis=-1)


def _label_generator_update(opts, l_mod, optimizer, state, batch, key, metrics, axis_name):
  """Cross-entropy of G_l on the real (image, label) pair -> (l_params, l_state, l_opt)."""

  def loss_fn(params):
    logits, new = l_mod.apply({'params': params, **state.l_state}, batch['image'], train=True,
                              rngs={'dropout': key}, mutable=['batch_stats'])
    target = losses.downsample_labels(batch['label'], logits.shape[1:3])
    valid = losses.valid_label_mask(target, opts.num_classes, opts.ignore_label)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, target, 0))
    ce = jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
    return ce, {**state.l_state, **new}

  (ce, l_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.l_params)
  metrics['l/cross_entropy'] = ce
  l_params, l_opt = _update('l', optimizer, grads, state.l_opt, state.l_params, metrics, axis_name)
  return l_params, l_state, l_opt


def _update_banks(opts, banks, key, embeddings, label, axis_name):
  """Enqueues this step's stride-s embeddings into banks['s<s>'] for every contrastive stride
  (labels nearest-downsampled; gathered first with contrastive_gather='maps')."""
  if opts.contrastive_gather == 'maps':
    embeddings = {k: losses.gather_across_devices(v, axis_name) for k, v in embeddings.items()}
    label, axis_name = losses.gather_across_devices(label, axis_name), None
  new = {}
  for s in opts.strides:
    emb = jax.lax.stop_gradient(embeddings[f's{s}'])
    new[f's{s}'] = losses.update_memory_bank(
        banks[f's{s}'], jax.random.fold_in(key, s), emb,
        losses.downsample_labels(label, emb.shape[1:3]),
        pixels_per_class=opts.bank_pixels_per_class, ignore_label=opts.ignore_label,
        axis_name=axis_name)
  return new
