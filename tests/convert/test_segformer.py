"""SegFormer in Flax against transformers' own SegformerForSemanticSegmentation (random weights,
built offline), through the converter; plus variant parameter counts and checkpoint handling."""
import functools
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from configs import default as default_config  # noqa: E402
from ecgan_jax import configuration  # noqa: E402
from ecgan_jax.convert import common  # noqa: E402
from ecgan_jax.convert import segformer as convert_segformer  # noqa: E402
from ecgan_jax.models import segformer  # noqa: E402

TOL = 1e-4


def _apply(model, variables, image, **kwargs):
  """model.apply as one jitted program (eagerly, each of its ~200 ops would compile on its own)."""
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, jnp.asarray(image))


# A tiny MiT with every structural feature: 4 stages, sr ratios 8/4/2/1, several blocks, 5 labels.
# Heads are MiT's standard (1, 2, 5, 8) so that the spec is recoverable from weights alone.
TINY = dict(hidden_sizes=[8, 16, 40, 64], depths=[1, 2, 1, 1], num_attention_heads=[1, 2, 5, 8],
            sr_ratios=[8, 4, 2, 1], decoder_hidden_size=16, num_labels=5,
            classifier_dropout_prob=0.0, drop_path_rate=0.0)


def _randomize(model: 'torch.nn.Module', seed: int) -> None:
  """Gives every weight and buffer a random value of order one (HF's init is std 0.02, which
  would make the comparison nearly vacuous)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim >= 2:
        p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
      elif name.endswith('weight'):
        p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
      else:
        p.copy_(0.2 * torch.randn(p.shape, generator=g))
    bn = model.decode_head.batch_norm
    bn.running_mean.copy_(0.3 * torch.randn(bn.running_mean.shape, generator=g))
    bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=g))


@pytest.fixture(scope='module')
def hf_model():
  torch.manual_seed(0)
  model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(**TINY))
  _randomize(model, seed=1)
  return model.eval()


@pytest.fixture(scope='module')
def hf_folder(hf_model, tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('segformer_hf'))
  hf_model.save_pretrained(folder)  # config.json + model.safetensors, hub key layout
  return folder


@pytest.fixture(scope='module')
def image():
  # 64x48: non-square, so height/width mix-ups show.
  return np.random.RandomState(0).randn(2, 64, 48, 3).astype(np.float32)


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    out = model(torch.from_numpy(x.transpose(0, 3, 1, 2))).logits
  return out.numpy().transpose(0, 2, 3, 1)


def test_safetensors_folder_gives_transformers_logits(hf_model, hf_folder, image):
  assert 'model.safetensors' in os.listdir(hf_folder)
  model, variables = convert_segformer.segformer_from_checkpoint(hf_folder)
  assert model.resolved_spec().depths == (1, 2, 1, 1)
  out = _apply(model, variables, image)
  ref = _torch_logits(hf_model, image)
  assert out.shape == ref.shape == (2, 16, 12, 5)
  assert np.abs(ref).max() > 0.5  # a non-trivial comparison
  np.testing.assert_allclose(np.asarray(out), ref, atol=TOL, rtol=0)


def test_torch_bin_in_transformers5_layout_without_config_gives_same_variables(
    hf_model, hf_folder, tmp_path):
  # model.state_dict() of transformers >= 5 uses the new module names (stages.*, q_proj, ...).
  state = hf_model.state_dict()
  assert any('.q_proj.' in k for k in state)
  path = str(tmp_path / 'pytorch_model.bin')  # no config.json beside it: spec from the weights
  torch.save(state, path)
  from_bin = convert_segformer.load_segformer_params(path)
  from_safetensors = convert_segformer.load_segformer_params(hf_folder)
  assert jax.tree.structure(from_bin) == jax.tree.structure(from_safetensors)
  jax.tree.map(np.testing.assert_array_equal, from_bin, from_safetensors)
  spec, num_labels, _ = convert_segformer.read_segformer_checkpoint(path)
  assert (spec.hidden_sizes, spec.depths, spec.sr_ratios, num_labels) == (
      (8, 16, 40, 64), (1, 2, 1, 1), (8, 4, 2, 1), 5)


def test_hub_layout_torch_bin_file_reads_like_safetensors(hf_folder, tmp_path):
  from safetensors.numpy import load_file
  hub = load_file(os.path.join(hf_folder, 'model.safetensors'))
  assert any('.attention.self.query.' in k for k in hub)
  path = str(tmp_path / 'weights.pth')
  torch.save({'state_dict': {k: torch.from_numpy(v) for k, v in hub.items()}}, path)
  a = convert_segformer.load_segformer_params(path)
  b = convert_segformer.load_segformer_params(hf_folder)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_train_mode_matches_torch_train_mode_and_updates_batch_stats(hf_folder, image):
  hf = transformers.SegformerForSemanticSegmentation.from_pretrained(hf_folder).train()
  model, variables = convert_segformer.segformer_from_checkpoint(hf_folder)
  ref = _torch_logits(hf, image)  # also updates hf's running stats (momentum 0.1)
  out, updates = _apply(model, variables, image, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(out), ref, atol=TOL, rtol=0)
  bn = hf.decode_head.batch_norm
  stats = updates['batch_stats']['decode_head']['batch_norm']
  np.testing.assert_allclose(stats['mean'], bn.running_mean.numpy(), atol=1e-5)
  # torch folds the unbiased batch variance into running_var, flax the biased one: undo the
  # n/(n-1) factor on torch's side before comparing.
  n = image.shape[0] * out.shape[1] * out.shape[2]
  old = variables['batch_stats']['decode_head']['batch_norm']['var']
  torch_batch_var = (bn.running_var.numpy() - 0.9 * old) / 0.1
  np.testing.assert_allclose(stats['var'], 0.9 * old + 0.1 * torch_batch_var * (n - 1) / n,
                             atol=1e-5)
  assert not np.allclose(stats['mean'], variables['batch_stats']['decode_head']['batch_norm']['mean'])


def test_msgpack_round_trip_keeps_spec_and_logits(hf_folder, image, tmp_path):
  spec, num_labels, variables = convert_segformer.read_segformer_checkpoint(hf_folder)
  path = convert_segformer.save_segformer_params(variables, spec, num_labels,
                                                 str(tmp_path / 'g_l.msgpack'))
  model, restored = convert_segformer.segformer_from_checkpoint(path)
  assert model.resolved_spec() == spec and model.num_labels == 5
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  a = _apply(model, restored, image)
  b = _apply(model, variables, image)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_of_another_variant_is_rejected_by_name(hf_folder):
  with pytest.raises(common.ConversionError, match='not MiT-b0.*hidden_sizes'):
    convert_segformer.load_segformer_params(hf_folder, variant='b0')


def test_missing_and_unknown_keys_are_reported(hf_folder, tmp_path):
  from safetensors.numpy import load_file, save_file
  state = load_file(os.path.join(hf_folder, 'model.safetensors'))
  broken = dict(state)
  del broken['decode_head.linear_fuse.weight']
  save_file(broken, str(tmp_path / 'missing.safetensors'))
  with pytest.raises(common.ConversionError, match=r"missing \(1\).*linear_fuse"):
    convert_segformer.load_segformer_params(str(tmp_path / 'missing.safetensors'))
  extra = dict(state, **{'decode_head.extra_layer.weight': np.zeros((2, 2), np.float32)})
  save_file(extra, str(tmp_path / 'extra.safetensors'))
  with pytest.raises(common.ConversionError, match='extra_layer'):
    convert_segformer.load_segformer_params(str(tmp_path / 'extra.safetensors'))


def test_encoder_only_checkpoint_loads_encoder_params(tmp_path):
  torch.manual_seed(0)
  encoder = transformers.SegformerModel(transformers.SegformerConfig(**TINY))
  encoder.save_pretrained(str(tmp_path))
  spec, num_labels, variables = convert_segformer.read_segformer_checkpoint(str(tmp_path))
  assert num_labels == 0 and set(variables) == {'params'}
  assert set(variables['params']) == {'encoder'}
  ref = encoder.state_dict()
  key = next(k for k in ref if k.endswith('stages.0.patch_embeddings.proj.weight'))
  np.testing.assert_array_equal(
      variables['params']['encoder']['stage_0']['patch_embed']['proj']['kernel'],
      ref[key].numpy().transpose(2, 3, 1, 0))


def test_safetensors_read_without_torch_and_bin_names_the_missing_package(
    hf_folder, tmp_path):
  path = str(tmp_path / 'x.bin')
  torch.save({'a': torch.zeros(2)}, path)
  code = (
      'import sys; sys.modules["torch"] = None\n'
      'from ecgan_jax.convert import segformer as s\n'
      f'v = s.load_segformer_params({hf_folder!r})\n'
      'assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]\n'
      'try:\n'
      f'  s.load_segformer_params({path!r})\n'
      'except ImportError as e:\n'
      '  assert "needs torch" in str(e), e\n'
      '  print("OK")\n')
  env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS='cpu', XLA_FLAGS='')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
  assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-2000:]


@pytest.mark.parametrize('variant', sorted(segformer.VARIANTS))
def test_variant_parameter_count_matches_transformers(variant):
  s = segformer.get_spec(variant)
  hf_config = transformers.SegformerConfig(
      hidden_sizes=list(s.hidden_sizes), depths=list(s.depths),
      num_attention_heads=list(s.num_heads), sr_ratios=list(s.sr_ratios),
      patch_sizes=list(s.patch_sizes), strides=list(s.strides), mlp_ratios=list(s.mlp_ratios),
      decoder_hidden_size=s.decoder_hidden_size, num_labels=150)
  with torch.device('meta'):  # shapes only, no memory or init cost
    hf = transformers.SegformerForSemanticSegmentation(hf_config)
  hf_params = sum(p.numel() for p in hf.parameters())
  hf_stats = sum(b.numel() for n, b in hf.named_buffers() if 'num_batches' not in n)
  abstract = common.abstract_variables(segformer.SegFormer(variant=variant, num_labels=150),
                                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert common.tree_num_params(abstract['params']) == hf_params
  assert common.tree_num_params(abstract['batch_stats']) == hf_stats


def test_variants_follow_the_segformer_paper():
  # SegFormer paper: b0 has 3.8M parameters with the 150-class ADE20K head, b5 84.7M.
  count = lambda v: common.tree_num_params(common.abstract_variables(
      segformer.SegFormer(variant=v, num_labels=150),
      jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))['params'])
  assert round(count('b0') / 1e6, 1) == 3.8
  assert round(count('b5') / 1e6, 1) == 84.7
  assert [segformer.get_spec(v).decoder_hidden_size for v in segformer.PUBLISHED_VARIANTS] == [
      256, 256, 768, 768, 768, 768]
  assert set(segformer.VARIANTS) == {*segformer.PUBLISHED_VARIANTS, 'tiny'} == set(
      configuration.SEGFORMER_VARIANTS)
  with pytest.raises(ValueError, match='Unknown SegFormer variant'):
    segformer.get_spec('b9')


def test_build_label_generator_reads_config():
  config = default_config.get_config()
  config.model.label_generator = 'b1'
  model = segformer.build_label_generator(config)
  assert model.variant == 'b1' and model.num_labels == configuration.num_classes(config)
  h, w = configuration.image_size(config)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x)[0],
                       jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32))
  assert out.shape == (2, h // 4, w // 4, configuration.num_classes(config))


def test_bfloat16_compute_stays_close_to_float32(hf_folder, image):
  model, variables = convert_segformer.segformer_from_checkpoint(hf_folder)
  bf16, _ = convert_segformer.segformer_from_checkpoint(hf_folder, dtype=jnp.bfloat16)
  a = np.asarray(_apply(model, variables, image))
  b = _apply(bf16, variables, image)
  assert b.dtype == jnp.float32
  assert np.abs(np.asarray(b) - a).max() < 0.1 * np.abs(a).max()
  assert jax.tree.leaves(variables)[0].dtype == np.float32


_SMALL = segformer.SegFormerSpec(hidden_sizes=(8, 16, 40, 64), depths=(1, 1, 1, 1),
                                 decoder_hidden_size=16)


def _numpy_variables(model, x, seed=0):
  """Random variables of the right shapes without compiling `model.init` (slow on a busy CPU)."""
  rng = np.random.RandomState(seed)
  abstract = common.abstract_variables(model, jax.ShapeDtypeStruct(x.shape, x.dtype))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      return (rng.randn(*leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
    if 'scale' in name or "'var'" in name:
      return np.ones(leaf.shape, np.float32)
    return (0.1 * rng.randn(*leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def test_stochastic_depth_and_dropout_need_rng_only_when_active():
  x = jnp.asarray(np.random.RandomState(1).randn(2, 32, 32, 3), jnp.float32)
  plain = segformer.SegFormer(spec=_SMALL, num_labels=3)
  noisy = segformer.SegFormer(spec=_SMALL, num_labels=3, drop_path_rate=0.5,
                              classifier_dropout=0.5)
  variables = _numpy_variables(plain, x)

  @jax.jit
  def outputs(v, key):
    eval_plain = plain.apply(v, x)
    eval_noisy = noisy.apply(v, x)
    k1, k2 = jax.random.split(key)
    run = lambda k: noisy.apply(v, x, train=True, mutable=['batch_stats'], rngs={'dropout': k})[0]
    return eval_plain, eval_noisy, run(k1), run(k2)

  eval_plain, eval_noisy, a, b = outputs(variables, jax.random.PRNGKey(1))
  assert eval_plain.shape == a.shape == (2, 8, 8, 3)
  np.testing.assert_array_equal(eval_noisy, eval_plain)  # eval mode is deterministic
  assert not np.allclose(a, b)  # different dropout keys drop different paths
  with pytest.raises(Exception, match='dropout'):
    jax.eval_shape(lambda v: noisy.apply(v, x, train=True, mutable=['batch_stats']), variables)


def test_batch_stats_sync_across_devices_equals_one_device_on_full_batch():
  n = 2
  x = jnp.asarray(np.random.RandomState(2).randn(2 * n, 32, 32, 3), jnp.float32)
  single = segformer.SegFormer(spec=_SMALL, num_labels=3)
  variables = _numpy_variables(single, x)
  ref_out, ref_stats = jax.jit(
      lambda v: single.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  synced = segformer.SegFormer(spec=_SMALL, num_labels=3, axis_name='batch')
  out, stats = jax.pmap(
      lambda v, xs: synced.apply(v, xs, train=True, mutable=['batch_stats']),
      axis_name='batch', in_axes=(None, 0), devices=jax.devices()[:n])(
          variables, x.reshape(n, 2, *x.shape[1:]))
  np.testing.assert_allclose(np.asarray(out).reshape(ref_out.shape), ref_out, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, atol=1e-6), stats, ref_stats)


def test_depthwise_conv_equals_grouped_flax_conv():
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.randn(2, 5, 7, 6), jnp.float32)
  params = {'kernel': jnp.asarray(rng.randn(3, 3, 1, 6), jnp.float32),
            'bias': jnp.asarray(rng.randn(6), jnp.float32)}
  ours = segformer.DepthwiseConv3x3(6).apply({'params': params}, x)
  conv = flax.linen.Conv(6, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=6)
  ref = conv.apply({'params': params}, x)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)


def test_convert_file_writes_msgpack_and_refuses_wrong_variant(hf_folder, tmp_path):
  from ecgan_jax import convert
  out = convert.convert_file('segformer', hf_folder, str(tmp_path / 'g_l.msgpack'))
  assert os.path.isfile(out) and os.path.isfile(str(tmp_path / 'g_l.json'))
  jax.tree.map(np.testing.assert_array_equal, convert.load_segformer_params(out),
               convert.load_segformer_params(hf_folder))
  with pytest.raises(common.ConversionError, match='not MiT-b1'):
    convert.convert_file('segformer', hf_folder, str(tmp_path / 'b1.msgpack'), variant='b1')
  with pytest.raises(ValueError, match='must end in .msgpack'):
    convert.convert_file('segformer', hf_folder, str(tmp_path / 'x.bin'))


def test_sharded_safetensors_index_is_read_as_one_state_dict(hf_folder, tmp_path):
  import json
  from safetensors.numpy import load_file, save_file
  state = load_file(os.path.join(hf_folder, 'model.safetensors'))
  keys = sorted(state)
  shards = {'model-00001-of-00002.safetensors': keys[:len(keys) // 2],
            'model-00002-of-00002.safetensors': keys[len(keys) // 2:]}
  for name, part in shards.items():
    save_file({k: state[k] for k in part}, str(tmp_path / name))
  with open(tmp_path / 'model.safetensors.index.json', 'w') as f:
    json.dump({'weight_map': {k: n for n, part in shards.items() for k in part}}, f)
  jax.tree.map(np.testing.assert_array_equal,
               convert_segformer.load_segformer_params(str(tmp_path)),
               convert_segformer.load_segformer_params(hf_folder))
