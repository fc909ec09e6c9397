"""ECGAN++ generator: shapes for every dataset config, parameter counts, gradients, spectral-norm
state, determinism, ablation switches, Eq. 1, class-specific decoder, embeddings, config errors."""
import copy
import importlib

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default, synthetic
from ecgan_jax import _runtime
from ecgan_jax import configuration as C
from ecgan_jax.configuration import ConfigError
from ecgan_jax.models import (GENERATOR_PARTS, build_discriminator, build_generator,
                              build_style_encoder, one_hot_semantics, parameter_counts)

DATASETS = ('ade20k', 'cityscapes', 'coco_stuff', 'celebamask_hq', 'synthetic')
RNGS = {'params': jax.random.PRNGKey(1), 'noise': jax.random.PRNGKey(2)}

# Parameter counts of the released PyTorch ECGAN code (commit 4fcb0cc of Ha0Tang/ECGAN) for ADE20K,
# ngf=ndf=64, counted by instantiating its SPADEGenerator / MultiscaleDiscriminator / ConvEncoder.
REF_GENERATOR = 97_165_377  # the "97.2M": SPADE trunk + edge/image branches + G_s (+ unused fc1)
REF_TRUNK = 96_490_752      # fc + head_0 + G_middle_0/1 + up_0..up_3
REF_BRANCH = 24_467         # conv_{img,edge}{1..4}: 64->32->16->8->3
REF_DISCRIMINATOR = 5_836_930
REF_STYLE_ENCODER = 10_463_424


def tiny_config(arg='tiny', crop=32, **model):
  cfg = synthetic.get_config(arg)
  cfg.dataset.crop_size = crop
  cfg.dataset.load_size = crop
  for k, v in model.items():
    cfg.model[k] = v
  return cfg


def two_layouts(cfg):
  """Two different label maps [2, H, W] (every class present somewhere in the batch)."""
  h, w = C.image_size(cfg)
  n = C.num_classes(cfg)
  a = (np.arange(w)[None, :] * n // w + np.zeros((h, 1), int)) % n
  b = np.where(np.arange(h)[:, None] < h // 2, 1, 3) + np.zeros((1, w), int)
  b[: h // 4, : w // 4] = 5 % n
  return jnp.asarray(np.stack([a, b]), jnp.int32)


def semantics_for(cfg, label):
  return one_hot_semantics(label, C.num_classes(cfg))


def abstract_init(model, *args, **kwargs):
  return jax.eval_shape(lambda *a: model.init(RNGS, *a, **kwargs), *args)


@pytest.fixture(scope='module')
def tiny():
  """Tiny full model (B8) at 32x32, batch 2, in one jit (one compile): init; per normalisation
  mode the gradients of a loss on every output, with the outputs, updated batch_stats and sown
  intermediates; and the batch_stats after a training pass with all weights scaled by 1.5."""
  cfg = tiny_config()
  g = build_generator(cfg)
  sem = semantics_for(cfg, two_layouts(cfg))

  @_runtime.jit_run_once  # runs once: XLA without LLVM optimisation compiles it sooner
  def everything(sem):
    variables = g.init(RNGS, sem, train=False)

    def loss(params, train):
      out, state = g.apply({'params': params, 'batch_stats': variables['batch_stats']}, sem,
                           train=train, mutable=['batch_stats', 'intermediates'])
      value = sum(jnp.sum(jnp.sin(3.0 * x + 1.0)) for x in jax.tree.leaves(out)
                  if x.dtype == jnp.float32)
      return value, (out, state)

    results = {train: jax.grad(loss, has_aux=True)(variables['params'], train)
               for train in (False, True)}
    scaled = jax.tree.map(lambda p: 1.5 * p, variables['params'])
    _, scaled_state = g.apply({'params': scaled, 'batch_stats': variables['batch_stats']}, sem,
                              train=True, mutable=['batch_stats'])
    return variables, results, scaled_state

  variables, results, scaled_state = everything(sem)
  return dict(cfg=cfg, g=g, sem=sem, variables=variables, results=results,
              scaled_state=scaled_state)


@pytest.mark.parametrize('name', DATASETS)
def test_output_shapes_for_every_dataset_config(name):
  cfg = importlib.import_module(f'configs.{name}').get_config('tiny')
  g = build_generator(cfg)
  b, (h, w) = 2, C.image_size(cfg)
  sem = jax.ShapeDtypeStruct((b, h, w, C.semantic_nc(cfg)), jnp.float32)
  variables = abstract_init(g, sem, train=False)
  out = jax.eval_shape(lambda v, s: g.apply(v, s, train=True, mutable=['batch_stats'])[0],
                       variables, sem)
  for key in ('image', 'coarse_image', 'edge', 'class_image'):
    assert out[key].shape == (b, h, w, 3), key
  for s in cfg.model.contrastive_strides:
    assert out['embeddings'][f's{s}'].shape == (b, h // s, w // s, cfg.model.proj_dim)
  if not cfg.dataset.no_instance:  # Cityscapes / COCO-Stuff: one-hot + instance channel
    assert C.semantic_nc(cfg) == C.num_classes(cfg) + 1


@pytest.mark.parametrize('up,norm,sn,mode', [('more', 'instance', 'all', 'noise3d'),
                                               ('most', 'batch', 'none', 'vae'),
                                               ('normal', 'instance', 'reference', 'vae')])
def test_trunk_variants_produce_full_size_outputs(up, norm, sn, mode):
  cfg = tiny_config(crop=128, num_upsampling_layers=up, param_free_norm=norm, spectral_norm=sn,
                    multimodal=mode)
  g = build_generator(cfg)
  sem = jax.ShapeDtypeStruct((2, 128, 128, C.semantic_nc(cfg)), jnp.float32)
  v = abstract_init(g, sem, train=False)
  assert v['params']['trunk']['fc']['kernel'].shape[0] == (
      cfg.model.z_dim if mode == 'vae' else 3)  # linear layer on z vs 3x3 conv on the map
  if mode == 'noise3d':  # the noise channels reach every SPADE beside the label map
    assert v['params']['trunk']['head_0']['norm_0']['mlp_shared']['kernel'].shape[2] == (
        C.semantic_nc(cfg) + cfg.model.z_dim)
  out = jax.eval_shape(lambda v, s: g.apply(v, s, train=True, mutable=['batch_stats'],
                                            rngs={'noise': jax.random.PRNGKey(0)})[0], v, sem)
  assert out['image'].shape == out['edge'].shape == (2, 128, 128, 3)
  assert ('most' == up) == ('up_4' in v['params']['trunk'])


def test_ade20k_full_size_outputs_are_256x256():
  cfg = importlib.import_module('configs.ade20k').get_config()
  assert cfg.model.ngf == 64 and C.image_size(cfg) == (256, 256)
  g = build_generator(cfg)
  sem = jax.ShapeDtypeStruct((2, 256, 256, 151), jnp.float32)
  variables = abstract_init(g, sem, train=False)
  out = jax.eval_shape(lambda v, s: g.apply(v, s, train=False), variables, sem)
  for key in ('image', 'coarse_image', 'edge'):  # I'', I', I'_e
    assert out[key].shape == (2, 256, 256, 3)
  assert out['embeddings']['s16'].shape == (2, 16, 16, 128)


def test_parameter_counts_per_component_for_ade20k():
  cfg = importlib.import_module('configs.ade20k').get_config()
  table = parameter_counts(cfg)
  for name, count in table.items():
    print(f'{name:40s} {count:>12,d}')
  trunk, g_e, g_i, g_t, g_s, g_c, fusion, head = (table[v] for v in GENERATOR_PARTS.values())
  assert trunk + g_e + g_i + g_t + g_s + g_c + fusion + head == table['generator total']
  assert fusion == (64 + 3 + 3) * 2 * 9 + 2  # class_fusion 'learned': one 3x3 conv to 2 weights
  assert g_t == 0  # sigmoid attention only
  # The trunk and both branches are the released architecture, parameter for parameter.
  assert trunk == REF_TRUNK
  assert g_e == g_i == REF_BRANCH
  # G_s: one channel per class N = 151 (150 + don't-care) where the reference uses label_nc=150,
  # and no unused Linear(150, 150).
  n, cf = 151, 64 + 3 + 3 + 151
  assert g_s == (cf * n * 9 + n) + (n * cf * 9 + cf) + (cf * 27 + 3)
  ref_gs = REF_GENERATOR - REF_TRUNK - 2 * REF_BRANCH
  released_part = trunk + g_e + g_i + g_s
  assert released_part - REF_GENERATOR == g_s - ref_gs
  assert abs(released_part - REF_GENERATOR) / REF_GENERATOR < 1e-3
  assert g_c > 0 and head > 0  # ECGAN++ additions, absent from the released code
  assert table['D (multi-scale discriminator)'] == REF_DISCRIMINATOR
  assert table['style encoder'] == REF_STYLE_ENCODER


def test_gradients_reach_every_parameter(tiny):
  # Evaluation-mode normalisation is a fixed affine map: every parameter must get a gradient.
  g_eval = tiny['results'][False][0]
  for path, g in jax.tree_util.tree_leaves_with_path(g_eval):
    assert float(jnp.max(jnp.abs(g))) > 0, f'no gradient reaches {jax.tree_util.keystr(path)}'
  # Training mode (batch statistics): every kernel gets a gradient...
  g_train = tiny['results'][True][0]
  flat = flax.traverse_util.flatten_dict(g_train, sep='/')
  for name, g in flat.items():
    if name.endswith('kernel'):
      assert float(jnp.max(jnp.abs(g))) > 0, f'no gradient reaches {name}'
  # ... while the bias of conv_0 (read only by the next batch norm, which removes per-channel
  # constants) has a true gradient of zero: float noise far below its kernel's gradient.
  for name, g in flat.items():
    if name.startswith('trunk/') and name.endswith('conv_0/conv/bias'):
      kernel = flat[name.replace('bias', 'kernel')]
      assert float(jnp.max(jnp.abs(g))) < 1e-4 * float(jnp.max(jnp.abs(kernel))), name


def test_spectral_norm_state_updates_in_training_not_in_evaluation(tiny):
  v = tiny['variables']
  before = flax.traverse_util.flatten_dict(v['batch_stats'], sep='/')
  after_eval = flax.traverse_util.flatten_dict(tiny['results'][False][1][1]['batch_stats'], sep='/')
  after_train = flax.traverse_util.flatten_dict(tiny['results'][True][1][1]['batch_stats'], sep='/')
  sigma_keys = [k for k in before if k.endswith('/sn/sigma')]
  bn_keys = [k for k in before if k.endswith(('/mean', '/var'))]
  assert sigma_keys and bn_keys
  for k in before:  # evaluation leaves every statistic alone
    np.testing.assert_array_equal(before[k], after_eval[k], err_msg=k)
  for k in bn_keys:
    assert not np.allclose(before[k], after_train[k]), f'{k} did not update in training'
  # Scaling every weight by 1.5 (as an optimiser step would change them) must show up in the
  # stored sigma after one training pass: the power iteration runs and its state is written back.
  after_scaled = flax.traverse_util.flatten_dict(tiny['scaled_state']['batch_stats'], sep='/')
  for k in sigma_keys:
    np.testing.assert_allclose(after_scaled[k], 1.5 * after_train[k], rtol=1e-4, err_msg=k)


def test_same_rng_gives_same_outputs_and_other_noise_differs():
  # vae on the B2 preset also shows that without G_t and G_s, I'' = I' = I'_i.
  for mode, preset in (('vae', 'B2'), ('noise3d', 'B1')):
    cfg = tiny_config(f'tiny,{preset}', multimodal=mode)
    g = build_generator(cfg)
    sem = semantics_for(cfg, two_layouts(cfg))

    @_runtime.jit_run_once
    def run(keys, zs):
      v = g.init(RNGS, sem, train=False)
      by_key = jax.vmap(lambda k: g.apply(v, sem, train=False, rngs={'noise': k})['image'])(keys)
      out, state = jax.vmap(lambda z: g.apply(v, sem, z, train=False, mutable=['intermediates']))(
          zs)  # an explicit z needs no RNG
      return by_key, out, state['intermediates']['image_branch_output'][0]

    keys = jnp.stack([jax.random.PRNGKey(7), jax.random.PRNGKey(7), jax.random.PRNGKey(8)])
    zs = jnp.stack([jnp.ones((2, cfg.model.z_dim))] * 2)
    by_key, by_z, image_i = run(keys, zs)
    np.testing.assert_array_equal(by_key[0], by_key[1])
    assert float(jnp.max(jnp.abs(by_key[0] - by_key[2]))) > 0, f'{mode}: noise has no effect'
    np.testing.assert_array_equal(by_z['image'][0], by_z['image'][1])
    assert float(jnp.max(jnp.abs(by_key[0] - by_z['image'][0]))) > 0, f'{mode}: z has no effect'
    np.testing.assert_array_equal(by_z['image'], by_z['coarse_image'])
    np.testing.assert_array_equal(by_z['coarse_image'], image_i)


def test_ablation_switches_remove_components():
  expect = {
      'B1': set(),
      'B2': {'edge_branch'},
      'B3': {'edge_branch'},
      'B4': {'edge_branch', 'semantic_preserving'},
      'B6': {'edge_branch', 'semantic_preserving', 'class_decoder', 'class_fusion',
             'projection_head'},
  }
  for preset, extra in expect.items():
    cfg = tiny_config(f'tiny,{preset}')
    g = build_generator(cfg)
    h, w = C.image_size(cfg)
    sem = jax.ShapeDtypeStruct((2, h, w, C.semantic_nc(cfg)), jnp.float32)
    v = abstract_init(g, sem, train=False)
    assert set(v['params']) == {'trunk', 'image_branch'} | extra, preset
    out = jax.eval_shape(lambda v, s: g.apply(v, s, train=False), v, sem)
    assert (out['edge'] is None) == ('edge_branch' not in extra)
    assert (out['class_image'] is None) == ('class_decoder' not in extra)
    assert (out['embeddings'] is None) == ('projection_head' not in extra)


def test_edge_transfer_implements_eq1(tiny):
  out, state = tiny['results'][False][1]
  image_i = state['intermediates']['image_branch_output'][0]
  expected = jax.nn.sigmoid(out['edge']) * image_i + image_i  # I' = sigmoid(I'_e) x I'_i + I'_i
  np.testing.assert_allclose(out['coarse_image'], expected, rtol=1e-6, atol=1e-7)
  assert not np.allclose(out['image'], out['coarse_image'])  # G_s produces a different I''


def test_class_specific_image_covers_every_present_class(tiny):
  sem = tiny['sem']
  out = tiny['results'][True][1][0]
  class_image = np.asarray(out['class_image'])
  covered = np.asarray(sem[..., :C.num_classes(tiny['cfg'])]).sum(-1) > 0
  assert np.all(np.abs(class_image[covered]).max(-1) > 0)  # every labelled pixel, every class
  assert np.all(class_image[~covered] == 0)


@pytest.mark.parametrize('preset,fusion', [('B6', 'learned'), ('B8', 'learned'),
                                           ('B8', 'discriminator')])
def test_gradients_of_the_final_image_reach_g_c_only_with_learned_fusion(preset, fusion):
  cfg = tiny_config(f'tiny,{preset}')
  cfg.model.class_fusion = fusion
  g = build_generator(cfg)
  h, w = C.image_size(cfg)
  label = jnp.asarray(np.random.default_rng(0).integers(0, C.num_classes(cfg), (2, h, w)))
  sem = one_hot_semantics(label, C.num_classes(cfg))

  @_runtime.jit_run_once  # one compile (3x faster than eager ops), without LLVM optimisation
  def class_decoder_grad_norm(sem):
    variables = g.init(RNGS, sem, train=False)
    grads = jax.grad(lambda p: jnp.sum(g.apply({**variables, 'params': p}, sem, train=False)[
        'image'] ** 2))(variables['params'])
    return optax.tree.norm(grads['class_decoder'])

  norm = float(class_decoder_grad_norm(sem))
  assert (norm > 0) == (fusion == 'learned'), norm


def test_embeddings_are_l2_normalised_per_stride(tiny):
  out = tiny['results'][True][1][0]
  assert set(out['embeddings']) == {'s1', 's4', 's8', 's16'}
  for s, e in out['embeddings'].items():
    np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-5, err_msg=s)


def test_bad_configuration_fails_naming_the_field():
  cases = [
      ('model.spectral_norm', 'sometimes'),
      ('model.param_free_norm', 'group'),
      ('model.multimodal', 'dropout'),
      ('model.dtype', 'float16'),
      ('model.ngf', 0),
      ('model.use_edge', False),  # with use_edge_transfer still True
      ('model.contrastive_strides', (1, 4, 8, 64)),
  ]
  for field, value in cases:
    cfg = tiny_config()
    section, name = field.split('.')
    cfg[section][name] = value
    expected = 'config.model.use_edge_transfer' if name == 'use_edge' else f'config.{field}'
    with pytest.raises(ConfigError, match=expected.replace('.', r'\.')):
      C.validate_config(cfg)
  assert 64 not in C.trunk_strides(C.num_upsampling(tiny_config()))
  cfg = default.get_config()
  cfg.dataset.crop_size = 48  # not divisible by 2**5
  cfg.dataset.load_size = 48
  with pytest.raises(ConfigError, match=r'config\.dataset\.crop_size'):
    C.validate_config(cfg)


def test_onehot_gather_gives_the_same_generator_outputs_and_gradients(tiny):
  """model.onehot_gather (the default) changes how the convolutions over the one-hot label map
  are computed, not what they compute: outputs and parameter gradients equal the plain convs'.
  Both generators get the `tiny` fixture's variables (its config, onehot_gather on): the two
  layouts of parameters are one (asserted below), so no init program is compiled here."""
  sem, variables = tiny['sem'], tiny['variables']
  results = []
  for gather in (True, False):
    cfg = copy.deepcopy(tiny['cfg'])
    cfg.model.onehot_gather = gather
    g = build_generator(cfg)
    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
    assert shapes(abstract_init(g, sem, train=False)) == shapes(variables)

    def loss(params, g=g):
      out, _ = g.apply({'params': params, 'batch_stats': variables['batch_stats']}, sem,
                       train=True, mutable=['batch_stats'])
      return sum(jnp.sum(jnp.sin(3.0 * x + 1.0)) for x in jax.tree.leaves(out))

    results.append(_runtime.jit_run_once(jax.value_and_grad(loss))(variables['params']))
  (va, ga), (vb, gb) = results
  np.testing.assert_allclose(va, vb, rtol=1e-5)
  flat_a = flax.traverse_util.flatten_dict(ga, sep='/')
  flat_b = flax.traverse_util.flatten_dict(gb, sep='/')
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    scale = float(jnp.max(jnp.abs(flat_b[name]))) + 1e-12
    np.testing.assert_allclose(flat_a[name], flat_b[name], rtol=1e-4, atol=1e-4 * scale,
                               err_msg=name)
