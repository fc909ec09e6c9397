"""SPADE / released-ECGAN checkpoints -> our networks, checked against an independent PyTorch
implementation of their G / D / E written here (same module names, so the same state_dict keys):
the ngf-64 key/shape sets of ADE20K and Cityscapes convert, the forward passes match in train and
eval mode (spectral norm, BatchNorm statistics) through a label-space mapping, unknown / missing
keys are named, and a warm-started run starts from exactly the converted network."""
import copy
import dataclasses
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional
SN = torch.nn.utils.spectral_norm

from configs import ade20k, cityscapes, synthetic  # noqa: E402
from ecgan_jax import configuration as C  # noqa: E402
from ecgan_jax.convert import common, spade_ecgan  # noqa: E402
from ecgan_jax.models import (build_discriminator, build_generator, build_style_encoder,  # noqa: E402
                              one_hot_semantics)
from ecgan_jax.training import setup  # noqa: E402

TOL = 1e-5
_APPLY_INIT_FROM = spade_ecgan.apply_init_from
# Parameter counts of the released code for ADE20K, ngf = ndf = 64 (tests/models/test_generator.py):
# they pin the torch modules below to the released layout.
REF_GENERATOR = 97_165_377
REF_DISCRIMINATOR = 5_836_930
REF_STYLE_ENCODER = 10_463_424


# ----------------------------------------------------------------- independent PyTorch networks
class TorchSPADE(nn.Module):
  def __init__(self, norm_nc, label_nc, hidden):
    super().__init__()
    self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
    self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
    self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
    self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

  def forward(self, x, seg):
    seg = F.interpolate(seg, size=x.shape[2:], mode='nearest')
    actv = self.mlp_shared(seg)
    return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class TorchBlock(nn.Module):
  def __init__(self, fin, fout, sem_nc, hidden):
    super().__init__()
    fmid = min(fin, fout)
    self.learned = fin != fout
    self.conv_0 = SN(nn.Conv2d(fin, fmid, 3, padding=1))
    self.conv_1 = SN(nn.Conv2d(fmid, fout, 3, padding=1))
    if self.learned:
      self.conv_s = SN(nn.Conv2d(fin, fout, 1, bias=False))
      self.norm_s = TorchSPADE(fin, sem_nc, hidden)
    self.norm_0 = TorchSPADE(fin, sem_nc, hidden)
    self.norm_1 = TorchSPADE(fmid, sem_nc, hidden)

  def forward(self, x, seg):
    x_s = self.conv_s(self.norm_s(x, seg)) if self.learned else x
    dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
    return x_s + self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))


class TorchGenerator(nn.Module):
  """SPADE's generator ('spade') or the released ECGAN generator ('ecgan', hard-coded 32/16/8)."""

  def __init__(self, kind, ngf, sem_nc, label_nc, latent_hw, hidden=128, vae=False, z_dim=256):
    super().__init__()
    self.kind, self.ngf, self.latent_hw = kind, ngf, latent_hw
    sh, sw = latent_hw
    self.fc = (nn.Linear(z_dim, 16 * ngf * sh * sw) if vae
               else nn.Conv2d(sem_nc, 16 * ngf, 3, padding=1))
    widths = [16, 16, 16, 16, 8, 4, 2, 1]
    names = ['head_0', 'G_middle_0', 'G_middle_1', 'up_0', 'up_1', 'up_2', 'up_3']
    for name, fin, fout in zip(names, widths[:-1], widths[1:]):
      setattr(self, name, TorchBlock(fin * ngf, fout * ngf, sem_nc, hidden))
    if kind == 'spade':
      self.conv_img = nn.Conv2d(ngf, 3, 3, padding=1)
      return
    for branch in ('img', 'edge'):
      for j, (a, b) in enumerate(zip([ngf, 32, 16, 8], [32, 16, 8, 3])):
        setattr(self, f'conv_{branch}{j + 1}', nn.Conv2d(a, b, 3, padding=1))
    comb = ngf + 6 + sem_nc
    self.conv_comb = nn.Conv2d(comb, 3, 3, padding=1)
    self.conv_comb1 = nn.Conv2d(comb, label_nc, 3, padding=1)
    self.conv_comb2 = nn.Conv2d(label_nc, comb, 3, padding=1)
    self.fc1 = nn.Linear(label_nc, label_nc)

  def forward(self, seg, z=None):
    lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    up = lambda t: F.interpolate(t, scale_factor=2, mode='nearest')  # noqa: E731
    if z is not None:
      x = self.fc(z).view(-1, 16 * self.ngf, *self.latent_hw)
    else:
      x = self.fc(F.interpolate(seg, size=self.latent_hw))
    x = self.G_middle_0(up(self.head_0(x, seg)), seg)
    x = self.G_middle_1(x, seg)
    for name in ('up_0', 'up_1', 'up_2', 'up_3'):
      x = getattr(self, name)(up(x), seg)
    if self.kind == 'spade':
      return torch.tanh(self.conv_img(lrelu(x))), None, None
    e, i = x, x
    for j in (1, 2, 3):
      e = getattr(self, f'conv_edge{j}')(lrelu(e))
      i = getattr(self, f'conv_img{j}')(lrelu(i))
      i = i * torch.sigmoid(e) + i
    edge = torch.tanh(self.conv_edge4(lrelu(e)))
    image = torch.tanh(self.conv_img4(lrelu(i)))
    image = image * torch.sigmoid(edge) + image
    combined = torch.cat([x, image, edge, seg], 1)
    fc = self.conv_comb1(lrelu(combined))
    fc = fc + fc * torch.sigmoid(fc.mean(dim=(2, 3), keepdim=True))
    final = torch.tanh(self.conv_comb(lrelu(self.conv_comb2(lrelu(fc)))))
    return final, image, edge


class TorchNLayerD(nn.Module):
  def __init__(self, input_nc, ndf, n_layers):
    super().__init__()
    seq = [[nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]]
    nf = ndf
    for n in range(1, n_layers):
      nf_prev, nf = nf, min(nf * 2, 512)
      conv = SN(nn.Conv2d(nf_prev, nf, 4, stride=1 if n == n_layers - 1 else 2, padding=2,
                          bias=False))
      seq.append([nn.Sequential(conv, nn.InstanceNorm2d(nf, affine=False)), nn.LeakyReLU(0.2)])
    seq.append([nn.Conv2d(nf, 1, 4, stride=1, padding=2)])
    for n, layers in enumerate(seq):
      self.add_module(f'model{n}', nn.Sequential(*layers))

  def forward(self, x):
    outs = []
    for m in self.children():
      x = m(x)
      outs.append(x)
    return outs


class TorchMultiscaleD(nn.Module):
  def __init__(self, input_nc, ndf, n_layers, num_d):
    super().__init__()
    for i in range(num_d):
      self.add_module(f'discriminator_{i}', TorchNLayerD(input_nc, ndf, n_layers))

  def forward(self, x):
    res = []
    for d in self.children():
      res.append(d(x))
      x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    return res


class TorchEncoder(nn.Module):
  def __init__(self, ngf, num_layers, z_dim=256):
    super().__init__()
    c = 3
    for k in range(num_layers):
      out = ngf * min(2 ** k, 8)
      conv = SN(nn.Conv2d(c, out, 3, stride=2, padding=1, bias=False))
      setattr(self, f'layer{k + 1}', nn.Sequential(conv, nn.InstanceNorm2d(out, affine=False)))
      c = out
    self.num_layers = num_layers
    self.fc_mu = nn.Linear(c * 16, z_dim)
    self.fc_var = nn.Linear(c * 16, z_dim)

  def forward(self, x):
    for k in range(self.num_layers):
      x = getattr(self, f'layer{k + 1}')(x if k == 0 else F.leaky_relu(x, 0.2))
    x = F.leaky_relu(x, 0.2).flatten(1)
    return self.fc_mu(x), self.fc_var(x)


def numel(module, skip=('weight_u', 'weight_v', 'running_', 'num_batches')):
  return sum(v.numel() for k, v in module.state_dict().items() if not any(s in k for s in skip))


def abstract_state_dict(module):
  """{key: zero-stride numpy array of the key's shape}: the key/shape set without the memory."""
  return {k: np.broadcast_to(np.float32(0.5), tuple(v.shape)) for k, v in module.state_dict().items()}


def to_nchw(x):
  return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def to_nhwc(t):
  return t.detach().permute(0, 2, 3, 1).numpy()


def to_np(t):
  return t.detach().numpy()


# ----------------------------------------------------------------- ngf 64 key/shape sets
@pytest.mark.parametrize('dataset', ['ade20k', 'cityscapes'])
def test_released_ngf64_layouts_convert(dataset):
  """The exact key/shape sets of the released ECGAN G/D (ngf = ndf = 64, ADE20K 151 / Cityscapes
  36 semantic channels) convert to the full ECGAN++ model; only ECGAN's never-called fc1 and the
  BatchNorm step counters are unused, and only G_c and the projection head stay fresh."""
  cfg = {'ade20k': ade20k, 'cityscapes': cityscapes}[dataset].get_config()
  src = spade_ecgan.RELEASED_LABEL_SPACES[dataset]
  with torch.device('meta'):
    g = TorchGenerator('ecgan', 64, src.semantic_nc, src.label_nc, C.latent_size(cfg))
    d = TorchMultiscaleD(src.semantic_nc + 3, 64, 4, 2)
  if dataset == 'ade20k':
    assert (numel(g), numel(d)) == (REF_GENERATOR, REF_DISCRIMINATOR)
  report = spade_ecgan.ConversionReport('ecgan')
  gv = spade_ecgan.convert_state_dict(abstract_state_dict(g), 'generator', cfg, 'ecgan', report)
  dv = spade_ecgan.convert_state_dict(abstract_state_dict(d), 'discriminator', cfg, 'ecgan', report)
  assert set(gv) == {'params', 'batch_stats'} and set(dv) == {'params', 'batch_stats'}
  assert {k for k, why in report.unused.items() if 'num_batches' not in k} == {'fc1.weight',
                                                                                  'fc1.bias'}
  assert {p.split('/')[2] for p in report.fresh} == {'class_decoder', 'class_fusion',
                                                     'projection_head'}
  # G_s's class channels: the source's label_nc, ours one more (don't care) filled with zeros.
  comb1 = gv['params']['semantic_preserving']['conv_comb1']['kernel']
  assert comb1.shape[-1] == C.num_classes(cfg) and not np.any(comb1[..., src.label_nc:])


def test_spade_ngf64_layout_converts_into_both_model_shapes():
  """SPADE's ADE20K G/D/E: into a SPADE-shaped config (B1, branch_widths=()) every leaf is filled;
  into the full model its single conv_img is listed as unused and the branches stay fresh."""
  cfg = ade20k.get_config('B1')
  cfg.model.branch_widths, cfg.model.edge_transfer_layers = (), 0
  cfg.model.multimodal = 'vae'
  src = spade_ecgan.RELEASED_LABEL_SPACES['ade20k']
  with torch.device('meta'):
    g = TorchGenerator('spade', 64, src.semantic_nc, src.label_nc, C.latent_size(cfg), vae=True)
    e = TorchEncoder(64, 6)
  assert numel(e) == REF_STYLE_ENCODER
  report = spade_ecgan.ConversionReport('spade')
  spade_ecgan.convert_state_dict(abstract_state_dict(g), 'generator', cfg, 'spade', report)
  spade_ecgan.convert_state_dict(abstract_state_dict(e), 'style_encoder', cfg, 'spade', report)
  assert report.fresh == [] and all('num_batches' in k for k in report.unused)
  full = ade20k.get_config()
  report = spade_ecgan.ConversionReport('spade')
  with torch.device('meta'):
    g = TorchGenerator('spade', 64, src.semantic_nc, src.label_nc, C.latent_size(full))
  spade_ecgan.convert_state_dict(abstract_state_dict(g), 'generator', full, 'spade', report)
  assert {k for k in report.unused if 'num_batches' not in k} == {'conv_img.weight',
                                                                  'conv_img.bias'}
  assert {p.split('/')[2] for p in report.fresh} == {
      'edge_branch', 'image_branch', 'semantic_preserving', 'class_decoder', 'class_fusion',
      'projection_head'}


# ----------------------------------------------------------------- small forward parity
# Our side: synthetic labels 0..5 plus a don't-care class and an instance channel; the torch side
# has no don't-care channel (Cityscapes' released layout), so the label-space mapping is exercised.
SRC = spade_ecgan.LabelSpace(6, False, True)


def small_config(ablation='B4', **model):
  cfg = synthetic.get_config(f'tiny,{ablation}')
  cfg.dataset.contain_dontcare_label, cfg.dataset.no_instance = True, False
  cfg.model.ngf, cfg.model.feature_channels, cfg.model.spade_hidden = 4, 4, 8
  cfg.model.branch_widths = (32, 16, 8)  # the released code's hard-coded widths
  for k, v in model.items():
    cfg.model[k] = v
  return cfg


def small_inputs(cfg, seed=0):
  """Our semantics [4, H, W, 8] (no don't-care pixel) and the torch ones [4, 7, H, W]."""
  rng = np.random.default_rng(seed)
  h, w = C.image_size(cfg)
  label = rng.integers(0, SRC.label_nc, (4, h // 8, w // 8)).repeat(8, 1).repeat(8, 2)
  inst = (rng.random((4, h, w, 1)) < 0.1).astype(np.float32)
  ours = np.asarray(one_hot_semantics(jnp.asarray(label), C.num_classes(cfg), jnp.asarray(inst)))
  theirs = np.concatenate([ours[..., :SRC.label_nc], inst], -1)
  return ours, to_nchw(theirs)


def randomize(module, seed, *inputs):
  """Random ~unit-gain weights (activations stay O(1)). With `inputs`: BatchNorm running
  statistics set from one train-mode pass on them (momentum 1, so eval mode is well conditioned
  instead of saturating), then one more pass so spectral-norm u / v are power-iterated states."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      scale = 0.1 if 'bias' in name else (1.0 / p[0].numel()) ** 0.5
      p.copy_(torch.randn(p.shape, generator=g) * scale)
    if inputs:
      norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
      module.train()
      for m in norms:
        m.momentum = 1.0
      module(*inputs)
      for m in norms:
        m.momentum = 0.1
      module(*inputs)


def apply_both_modes(module, variables, *args):
  """Our outputs in eval mode, then in train mode with the updated batch_stats (one jit)."""
  @jax.jit
  def both(variables, *args):
    eval_out = module.apply(variables, *args, train=False)
    train_out, new = module.apply(variables, *args, train=True, mutable=['batch_stats'])
    return eval_out, train_out, new['batch_stats']
  return both(variables, *args)


def fill(module, converted, *args):
  """Our variables: fresh init of `module` with every converted leaf put in place."""
  fresh = jax.eval_shape(lambda: module.init({'params': jax.random.PRNGKey(0),
                                              'noise': jax.random.PRNGKey(1)}, *args, train=False))
  fresh = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), fresh)
  merged, kept = spade_ecgan.overlay(fresh, converted, 'test')
  return merged, kept


def torch_eval_and_train(tmodule, *inputs):
  """The float64 torch reference on a copy of `tmodule`: outputs in eval mode, then in train mode
  (BatchNorm stats / spectral u, v update), and the state_dict after it as float32 numpy. Float64
  makes the reference exact, so the comparison measures our float32 error alone."""
  t64 = copy.deepcopy(tmodule).double()
  inputs = [x.double() for x in inputs]
  t64.eval()
  with torch.no_grad():
    eval_out = t64(*inputs)
  t64.train()
  with torch.no_grad():
    train_out = t64(*inputs)
  after = {k: v.detach().numpy().astype(np.float32) if v.is_floating_point() else v.numpy()
           for k, v in t64.state_dict().items()}
  return eval_out, train_out, after


def torch_float32_train(tmodule, *inputs):
  """The float32 torch forward in train mode on a copy: its distance to the float64 one is
  float32's own noise floor for this network."""
  t32 = copy.deepcopy(tmodule).train()
  with torch.no_grad():
    return t32(*inputs)


def assert_close(ours, ref64, ref32=None, what=''):
  """max |ours - ref64| <= 1e-5, or within three times PyTorch's own float32 error when that is
  larger (train-mode BatchNorm over a 7-block trunk puts float32 itself near 1e-5). Both float32
  errors vary from run to run with threaded reductions: on a 2-core AMD EPYC ours measured
  1.0-1.4e-5 against torch's 5-7e-6, so twice torch's was a coin flip."""
  err = max_err(ours, ref64)
  floor = 0.0 if ref32 is None else max_err(ref32, ref64)
  assert err <= max(TOL, 3 * floor), f'{what}: {err:.2e} (torch float32 vs float64: {floor:.2e})'


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
  """torch's thread pool fights XLA's for the 2 CPU cores (forwards 40x slower otherwise)."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def max_err(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope='module')
def ecgan_small():
  cfg = small_config()
  t = TorchGenerator('ecgan', 4, SRC.semantic_nc, SRC.label_nc, C.latent_size(cfg), hidden=8)
  randomize(t, 0, small_inputs(cfg, seed=1)[1])
  state = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
  return cfg, t, state


def test_ecgan_generator_forward_matches_torch(ecgan_small):
  """Same weights: I'', I' and I'_e equal the torch forward to 1e-5 in eval mode (running stats,
  stored u/v) and train mode (batch statistics, one power iteration), and the updated BatchNorm
  running statistics and spectral-norm vectors equal torch's."""
  cfg, t, state = ecgan_small
  report = spade_ecgan.ConversionReport('ecgan')
  conv = spade_ecgan.convert_state_dict(state, 'generator', cfg, 'ecgan', report, SRC)
  assert set(report.unused) == {'fc1.weight', 'fc1.bias'} | {
      k for k in state if k.endswith('num_batches_tracked')}
  ours_sem, t_sem = small_inputs(cfg, seed=2)
  model = build_generator(cfg)
  variables, kept = fill(model, conv, ours_sem)
  assert kept == []  # B4 is the released ECGAN: every leaf comes from the checkpoint
  eval_out, train_out, new_stats = apply_both_modes(model, variables, ours_sem)
  t_eval, t_train, t_after = torch_eval_and_train(t, t_sem)
  t32 = torch_float32_train(t, t_sem)
  for key, ref in zip(('image', 'coarse_image', 'edge'), t_eval):
    assert_close(eval_out[key], to_nhwc(ref), what=f'eval {key}')
  for key, ref, ref32 in zip(('image', 'coarse_image', 'edge'), t_train, t32):
    assert_close(train_out[key], to_nhwc(ref), to_nhwc(ref32), what=f'train {key}')
  after = spade_ecgan.convert_state_dict(t_after, 'generator', cfg, 'ecgan',
                                         spade_ecgan.ConversionReport('ecgan'), SRC)['batch_stats']
  errs = jax.tree.map(max_err, new_stats, after)
  assert max(jax.tree.leaves(errs)) <= TOL


def test_spade_generator_vae_forward_matches_torch():
  """SPADE's generator in VAE mode (fc on z, (C, H, W) -> (H, W, C) reshape) into a SPADE-shaped
  config (B1, branch_widths=()): eval and train outputs equal torch's to 1e-5."""
  cfg = small_config('B1', branch_widths=(), edge_transfer_layers=0, multimodal='vae')
  t = TorchGenerator('spade', 4, SRC.semantic_nc, SRC.label_nc, C.latent_size(cfg), hidden=8,
                     vae=True, z_dim=cfg.model.z_dim)
  ours_sem, t_sem = small_inputs(cfg, seed=4)
  z = np.random.default_rng(5).standard_normal((4, cfg.model.z_dim)).astype(np.float32)
  randomize(t, 3, t_sem, torch.from_numpy(z))
  conv = spade_ecgan.convert_state_dict(
      {k: v.detach().numpy() for k, v in t.state_dict().items()}, 'generator', cfg, 'spade',
      spade_ecgan.ConversionReport('spade'), SRC)
  model = build_generator(cfg)
  variables, kept = fill(model, conv, ours_sem, z)
  assert kept == []
  eval_out, train_out, _ = apply_both_modes(model, variables, ours_sem, z)
  t_eval, t_train, _ = torch_eval_and_train(t, t_sem, torch.from_numpy(z))
  assert np.mean(np.abs(to_nhwc(t_eval[0])) > 0.99) < 0.5  # eval output not saturated
  assert_close(eval_out['image'], to_nhwc(t_eval[0]), what='eval')
  assert_close(train_out['image'], to_nhwc(t_train[0]),
               to_nhwc(torch_float32_train(t, t_sem, torch.from_numpy(z))[0]), what='train')


def test_discriminator_and_style_encoder_forward_match_torch():
  """D (every feature map of both scales) and the style encoder (mu, logvar) equal torch's to
  1e-5 in eval and train mode; D's updated spectral-norm vectors equal torch's."""
  cfg = small_config(multimodal='vae')
  cfg.model.ndf, cfg.model.n_layers_D = 4, 3
  h, w = C.image_size(cfg)
  td = TorchMultiscaleD(SRC.semantic_nc + 3, 4, 3, 2)
  te = TorchEncoder(4, 4, z_dim=cfg.model.z_dim)  # 64 px -> 4 px in 4 layers
  randomize(td, 6)
  randomize(te, 7)
  ours_sem, t_sem = small_inputs(cfg, seed=8)
  image = np.random.default_rng(9).uniform(-1, 1, (4, h, w, 3)).astype(np.float32)
  report = spade_ecgan.ConversionReport('ecgan')
  d_conv = spade_ecgan.convert_state_dict({k: v.numpy() for k, v in td.state_dict().items()},
                                          'discriminator', cfg, 'ecgan', report, SRC)
  e_conv = spade_ecgan.convert_state_dict({k: v.numpy() for k, v in te.state_dict().items()},
                                          'style_encoder', cfg, 'ecgan', report, SRC)
  assert report.unused == {} and report.fresh == []
  d, e = build_discriminator(cfg), build_style_encoder(cfg)
  d_eval, d_train, d_stats = apply_both_modes(d, d_conv, ours_sem, image)
  e_eval, e_train, _ = apply_both_modes(e, e_conv, image)
  td_eval, td_train, td_after = torch_eval_and_train(td, torch.cat([t_sem, to_nchw(image)], 1))
  te_eval, te_train, _ = torch_eval_and_train(te, to_nchw(image))
  for ours, theirs in ((d_eval, td_eval), (d_train, td_train)):
    for o_scale, t_scale in zip(ours, theirs):
      for o, r in zip(o_scale, t_scale):
        assert max_err(o, to_nhwc(r)) <= TOL
  for ours, theirs in ((e_eval, te_eval), (e_train, te_train)):
    for o, r in zip(ours, theirs):
      assert max_err(o, to_np(r)) <= TOL
  after = spade_ecgan.convert_state_dict(td_after, 'discriminator', cfg, 'ecgan',
                                         spade_ecgan.ConversionReport('ecgan'), SRC)['batch_stats']
  assert max(jax.tree.leaves(jax.tree.map(max_err, d_stats, after))) <= TOL


# ----------------------------------------------------------------- errors name the keys
def test_unknown_missing_and_misshaped_keys_are_named(ecgan_small):
  cfg, _, state = ecgan_small
  convert = lambda sd: spade_ecgan.convert_state_dict(  # noqa: E731
      sd, 'generator', cfg, 'ecgan', spade_ecgan.ConversionReport('ecgan'), SRC)
  with pytest.raises(common.ConversionError, match=r'head_0\.conv_9\.weight'):
    convert({**state, 'head_0.conv_9.weight': state['head_0.conv_0.weight_orig']})
  with pytest.raises(common.ConversionError, match=r'missing keys: up_1\.conv_0\.weight_u'):
    convert({k: v for k, v in state.items() if k != 'up_1.conv_0.weight_u'})
  with pytest.raises(common.ConversionError, match=r'conv_img2 -> params/image_branch/conv_img2'):
    convert({**state, 'conv_img2.weight': state['conv_img2.weight'][:, :-1]})
  with pytest.raises(common.ConversionError, match='label_nc=6'):
    spade_ecgan.convert_state_dict(state, 'generator', cfg, 'ecgan',
                                   spade_ecgan.ConversionReport('ecgan'),
                                   dataclasses.replace(SRC, label_nc=7))


# ----------------------------------------------------------------- warm start + launcher
def test_warm_start_starts_from_the_converted_network(ecgan_small, tmp_path, monkeypatch):
  """convert + --config.model.init_from: the full model's (B8) initial state (training/setup.py)
  holds the converted G (and its EMA) and D, G_c, its fusion layer and the projection head keep
  their fresh init, and the first step's generator forward (train mode) equals the torch ECGAN
  forward to 1e-5, with class_fusion='discriminator' (I'' is then G_s's output, as in the released
  ECGAN; the default learned fusion mixes the fresh I_g into I'')."""
  _, t, state = ecgan_small
  d = TorchMultiscaleD(SRC.semantic_nc + 3, 8, 3, 2)
  randomize(d, 11)
  ckpt = tmp_path / 'run'
  ckpt.mkdir()
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, ckpt / 'latest_net_G.pth')
  torch.save(d.state_dict(), ckpt / 'latest_net_D.pth')
  out = tmp_path / 'ecgan_small.msgpack'
  cfg = small_config('B8')
  cfg.loss.use_similarity = False  # no SegFormer needed for this check
  cfg.model.class_fusion = 'discriminator'  # I'' is G_s's output, as in the released ECGAN
  variables, report = spade_ecgan.convert_checkpoint(str(ckpt), cfg, 'ecgan', src_space=SRC)
  spade_ecgan.save_converted(variables, report, str(out))
  assert 'fc1.weight' in spade_ecgan.converted_summary(str(out))

  cfg.model.init_from = str(out)
  run = setup.build(cfg)
  seen = []  # the fresh state the setup hands to the warm start (one compile, not two)
  monkeypatch.setattr(spade_ecgan, 'apply_init_from',
                      lambda st, path: seen.append(st) or _APPLY_INIT_FROM(st, path))
  warm = run.initial_state()
  fresh, = seen
  g = warm.g_params['generator']
  for part in ('class_decoder', 'projection_head'):
    assert jax.tree.all(jax.tree.map(np.array_equal, g[part], fresh.g_params['generator'][part]))
  for part in ('trunk', 'semantic_preserving'):
    assert jax.tree.all(jax.tree.map(np.array_equal, g[part], variables['generator']['params'][part]))
    assert jax.tree.all(jax.tree.map(np.array_equal, warm.ema_params['generator'][part], g[part]))
  assert jax.tree.all(jax.tree.map(np.array_equal, warm.d_params,
                                   variables['discriminator']['params']))
  ours_sem, t_sem = small_inputs(cfg, seed=12)
  out_train, _ = jax.jit(functools.partial(run.init_models.generator.apply, train=True,
                                           mutable=['batch_stats']))(
      {'params': g, **warm.g_state['generator']}, ours_sem)  # one program, not ~500 eager ops
  _, ref, _ = torch_eval_and_train(t, t_sem)
  for key, r, r32 in zip(('image', 'coarse_image', 'edge'), ref, torch_float32_train(t, t_sem)):
    assert_close(out_train[key], to_nhwc(r), to_nhwc(r32), what=key)


def test_launcher_converts_an_ecgan_run(ecgan_small, tmp_path):
  """launch/convert_weights.py --kind=ecgan --config=... writes the msgpack and its report."""
  _, _, state = ecgan_small
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / '7_net_G.pth')
  out = tmp_path / 'g.msgpack'
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  # synthetic labels with this project's own label space on both sides (no mapping needed)
  cfg_args = ['--config=configs/synthetic.py:tiny,B4', '--config.dataset.contain_dontcare_label=False',
              '--config.dataset.no_instance=False', '--config.model.ngf=4',
              '--config.model.feature_channels=4', '--config.model.spade_hidden=8',
              '--config.model.branch_widths=(32,16,8)']
  res = subprocess.run([sys.executable, 'launch/convert_weights.py', '--kind=ecgan',
                        f'--input={tmp_path / "7_net_G.pth"}', f'--output={out}', *cfg_args],
                       cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert res.returncode == 0, res.stderr[-2000:]
  assert 'unused' in res.stdout and 'fc1.weight' in res.stdout and os.path.isfile(out)
  assert set(common.load_variables(str(out))) == {'generator'}


def test_branch_widths_must_match_edge_transfer_layers():
  """config.model.branch_widths: a length other than edge_transfer_layers is a ConfigError naming
  both fields; set, it overrides the derived widths of G_e and G_i."""
  cfg = small_config(branch_widths=(32, 16))
  with pytest.raises(C.ConfigError, match=r'model\.branch_widths=\(32, 16\).*edge_transfer_layers=3'):
    C.validate_config(cfg)
  cfg = small_config()
  assert build_generator(cfg).branch_widths == (32, 16, 8)
  cfg.model.branch_widths = None
  assert build_generator(cfg).branch_widths == (4, 4, 4)  # derived from feature_channels = 4
