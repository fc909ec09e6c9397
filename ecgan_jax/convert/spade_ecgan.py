"""NVlabs/SPADE and released ECGAN (Ha0Tang/ECGAN) checkpoints -> Flax variables of our networks.

Both repositories save `{epoch}_net_G.pth`, `{epoch}_net_D.pth` and (VAE runs) `{epoch}_net_E.pth`
as plain state_dicts. They map as follows (torch module -> our module):

  G  fc, head_0, G_middle_0/1, up_0..up_4          -> generator/trunk (E) (same block names;
     {block}.norm_k.param_free_norm.running_*          -> batch_stats .../norm_k/norm/{mean,var})
     ECGAN conv_edge1..4 / conv_img1..4           -> generator/edge_branch (G_e) / image_branch (G_i)
     ECGAN conv_comb1, conv_comb2, conv_comb      -> generator/semantic_preserving (G_s)
     SPADE conv_img                               -> generator/image_branch/conv_img1 when
                                                     config.model.branch_widths == () (else unused)
  D  discriminator_i.model0.0 / model{n}.0.0 / model{N}.0 -> discriminator/discriminator_i/conv_n
  E  layer{k}.0, fc_mu, fc_var                    -> style_encoder/layer{k}, fc_mu, fc_var

Layouts: conv weights OIHW -> HWIO, linear [out, in] -> [in, out]; spectral norm
`weight_orig`/`weight_u`/`weight_v` -> kernel + batch_stats `sn/{u, v, sigma}` (v reordered from
(in, kh, kw) to (kh, kw, in); sigma = u^T W v); the VAE `fc` output and the encoders' flattened
input go from PyTorch's (C, H, W) order to our (H, W, C) order.

Label spaces: the released code's channel layout per dataset (`RELEASED_LABEL_SPACES`, e.g.
Cityscapes without a don't-care channel) is placed into ours with zero weights for the channels it
lacks (our don't-care class, or G_s's class channel for it), which leaves every forward on labels
the source knew unchanged. Nothing else is ever invented: an unknown key, a parameter a
converted component lacks, or a shape that does not fit is a `ConversionError` naming it; keys
with no place in the configured model (ECGAN's unused `fc1`, a switched-off component) are listed
by name in the report. ECGAN++ parts no source has (G_c, projection head) stay fresh.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from ecgan_jax import configuration
from ecgan_jax.convert import common
from ecgan_jax.models import build_discriminator, build_generator, build_style_encoder
from ecgan_jax.models.generator import config_branch_widths

log = logging.getLogger(__name__)

SOURCES = ('spade', 'ecgan')
# Network letter of `{epoch}_net_{X}.pth` -> our network name.
NETWORKS = {'G': 'generator', 'D': 'discriminator', 'E': 'style_encoder'}
# Generator sub-modules each source provides (a parameter of these that the checkpoint lacks is
# an error; other generator parts stay at their fresh initialisation).
PROVIDED = {'spade': ('trunk',),
            'ecgan': ('trunk', 'edge_branch', 'image_branch', 'semantic_preserving')}


@dataclasses.dataclass(frozen=True)
class LabelSpace:
  """Semantic channel layout: label_nc one-hot classes, then don't-care, then instance edges."""
  label_nc: int
  dontcare: bool
  instance: bool

  @property
  def num_classes(self) -> int:
    return self.label_nc + int(self.dontcare)

  @property
  def semantic_nc(self) -> int:
    return self.num_classes + int(self.instance)


# The released SPADE/ECGAN options per dataset (label_nc, contain_dontcare_label, not no_instance).
RELEASED_LABEL_SPACES = {
    'ade20k': LabelSpace(150, True, False),
    'cityscapes': LabelSpace(35, False, True),
    'coco_stuff': LabelSpace(182, True, True),
}


def target_label_space(config: Any) -> LabelSpace:
  d = config.dataset
  return LabelSpace(int(d.label_nc), bool(d.contain_dontcare_label), not d.no_instance)


def source_label_space(config: Any) -> LabelSpace:
  """The released code's layout for config.dataset.name, else the config's own."""
  return RELEASED_LABEL_SPACES.get(config.dataset.name, target_label_space(config))


def semantic_index(src: LabelSpace, dst: LabelSpace) -> np.ndarray:
  """Our semantic channel of each source channel (int [src.semantic_nc])."""
  problems = []
  if src.label_nc != dst.label_nc:
    problems.append(f'{src.label_nc} label ids vs config.dataset.label_nc={dst.label_nc}')
  if src.dontcare and not dst.dontcare:
    problems.append('a don\'t-care channel vs config.dataset.contain_dontcare_label=False')
  if src.instance and not dst.instance:
    problems.append('an instance channel vs config.dataset.no_instance=True')
  if problems:
    raise common.ConversionError('The checkpoint\'s label space does not fit the config: '
                                 + '; '.join(problems))
  idx = list(range(src.label_nc))
  if src.dontcare:
    idx.append(dst.label_nc)
  if src.instance:
    idx.append(dst.num_classes)
  return np.asarray(idx, np.int64)


@dataclasses.dataclass(frozen=True)
class ChannelMap:
  """Where each PyTorch channel of one axis goes among `size` of ours (zeros elsewhere)."""
  index: np.ndarray
  size: int


def _identity(n: int) -> ChannelMap:
  return ChannelMap(np.arange(n), n)


def _scatter(x: np.ndarray, axis: int, cmap: ChannelMap | None) -> np.ndarray:
  """x with axis `axis` placed at cmap.index of a zero array of cmap.size (no copy if identity)."""
  if cmap is None:
    return x
  if x.shape[axis] != len(cmap.index):
    raise common.ConversionError(f'axis {axis} of a {x.shape} tensor has {x.shape[axis]} channels, '
                                 f'the label-space mapping expects {len(cmap.index)}')
  if cmap.size == x.shape[axis] and np.array_equal(cmap.index, np.arange(cmap.size)):
    return x
  shape = list(x.shape)
  shape[axis] = cmap.size
  out = np.zeros(shape, x.dtype)
  np.moveaxis(out, axis, 0)[cmap.index] = np.moveaxis(x, axis, 0)
  return out


def chw_to_hwc(c: int, h: int, w: int) -> np.ndarray:
  """perm with ours[j] = torch[perm[j]] for a flat (C, H, W) vector read as (H, W, C)."""
  return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclasses.dataclass(frozen=True)
class Target:
  """Our module for one PyTorch module: network, path inside it, kind ('conv' | 'linear' |
  'norm'), channel maps of the output/input axes, and flat (C, H, W) -> (H, W, C) permutations of
  a linear layer's outputs / inputs given as (C, H, W) (resolved from the tensor size)."""
  network: str
  path: tuple[str, ...]
  kind: str
  out_map: ChannelMap | None = None
  in_map: ChannelMap | None = None
  out_chw_hw: tuple[int, int] | None = None  # (H, W): outputs are (C, H, W) in torch
  in_chw_hw: tuple[int, int] | None = None    # (H, W): inputs are (C, H, W) in torch


class Unused(Exception):
  """A known key that has no place in the configured model; the message says why."""


_SN_LEAVES = ('weight_orig', 'weight_u', 'weight_v')
_LEAVES = ('weight', 'bias') + _SN_LEAVES
_NORM_LEAVES = ('running_mean', 'running_var', 'num_batches_tracked')
_BLOCK = r'(head_0|G_middle_[01]|up_[0-4])'


@dataclasses.dataclass(frozen=True)
class _Ctx:
  """What the key rules need to know about the source and the configured model."""
  source: str
  sem: ChannelMap           # semantic input channels
  classes: ChannelMap       # G_s class channels (the source has label_nc of them)
  combined: ChannelMap      # G_s input [F, I', I'_e, S]
  branch_widths: tuple[int, ...]
  latent_hw: tuple[int, int]


def _make_ctx(config: Any, source: str, src_space: LabelSpace | None) -> _Ctx:
  dst = target_label_space(config)
  src = src_space or source_label_space(config)
  sem = ChannelMap(semantic_index(src, dst), dst.semantic_nc)
  fc = int(config.model.feature_channels)
  combined = ChannelMap(np.concatenate([np.arange(fc + 6), fc + 6 + sem.index]),
                        fc + 6 + dst.semantic_nc)
  return _Ctx(source, sem, ChannelMap(np.arange(src.label_nc), dst.num_classes), combined,
              config_branch_widths(config), configuration.latent_size(config))


def generator_target(module: str, ctx: _Ctx) -> Target | None:
  """Our module of a generator state_dict module name (None: not a generator module)."""
  if module == 'fc':
    return Target('generator', ('trunk', 'fc'), 'fc', in_map=ctx.sem, out_chw_hw=ctx.latent_hw)
  m = re.fullmatch(_BLOCK + r'\.(conv_[01s])', module)
  if m:
    return Target('generator', ('trunk', m[1], m[2]), 'conv')
  m = re.fullmatch(_BLOCK + r'\.(norm_[01s])\.param_free_norm', module)
  if m:
    return Target('generator', ('trunk', m[1], m[2], 'norm'), 'norm')
  m = re.fullmatch(_BLOCK + r'\.(norm_[01s])\.(mlp_shared\.0|mlp_gamma|mlp_beta)', module)
  if m:
    return Target('generator', ('trunk', m[1], m[2], m[3].split('.')[0]), 'conv',
                  in_map=ctx.sem if m[3] == 'mlp_shared.0' else None)
  if ctx.source == 'spade' and module == 'conv_img':
    if ctx.branch_widths:
      raise Unused(f'SPADE\'s single output conv has no place in an image branch with widths '
                   f'{ctx.branch_widths} (config.model.branch_widths=() keeps it)')
    return Target('generator', ('image_branch', 'conv_img1'), 'conv')
  if ctx.source == 'ecgan':
    m = re.fullmatch(r'conv_(img|edge)(\d)', module)
    if m:
      branch = 'image_branch' if m[1] == 'img' else 'edge_branch'
      return Target('generator', (branch, module), 'conv')
    if module == 'conv_comb1':
      return Target('generator', ('semantic_preserving', module), 'conv', out_map=ctx.classes,
                    in_map=ctx.combined)
    if module == 'conv_comb2':
      return Target('generator', ('semantic_preserving', module), 'conv', out_map=ctx.combined,
                    in_map=ctx.classes)
    if module == 'conv_comb':
      return Target('generator', ('semantic_preserving', module), 'conv', in_map=ctx.combined)
    if module == 'fc1':
      raise Unused('declared but never called in the released ECGAN forward')
  return None


def discriminator_target(module: str, ctx: _Ctx) -> Target | None:
  """discriminator_i.model0.0 | model{n}.0.0 (spectral conv + instance norm) | model{N}.0."""
  m = re.fullmatch(r'discriminator_(\d+)\.model(\d+)\.0(\.0)?', module)
  if not m:
    return None
  in_map = None
  if m[2] == '0':  # [semantics, image]
    in_map = ChannelMap(np.concatenate([ctx.sem.index, ctx.sem.size + np.arange(3)]),
                        ctx.sem.size + 3)
  return Target('discriminator', (f'discriminator_{m[1]}', f'conv_{m[2]}'), 'conv', in_map=in_map)


def style_encoder_target(module: str, ctx: _Ctx) -> Target | None:
  """layer{k}.0 (spectral conv + instance norm), fc_mu / fc_var on the flattened [C, 4, 4] map."""
  del ctx
  m = re.fullmatch(r'(layer\d)\.0', module)
  if m:
    return Target('style_encoder', (m[1],), 'conv')
  if module in ('fc_mu', 'fc_var'):
    return Target('style_encoder', (module,), 'linear', in_chw_hw=(4, 4))
  return None


_TARGETS = {'generator': generator_target, 'discriminator': discriminator_target,
            'style_encoder': style_encoder_target}


def _split_key(key: str) -> tuple[str, str]:
  """'module.up_0.conv_0.weight_orig' -> ('up_0.conv_0', 'weight_orig') (DataParallel prefix off)."""
  key = key[len('module.'):] if key.startswith('module.') else key
  module, _, leaf = key.rpartition('.')
  return module, leaf


def _convert_module(module: str, tensors: Mapping[str, np.ndarray], t: Target
                    ) -> dict[tuple[str, ...], Any]:
  """Our leaves {(collection, *path, leaf): array} of one PyTorch module's tensors."""
  out: dict[tuple[str, ...], Any] = {}
  need = (('running_mean', 'running_var') if t.kind == 'norm' else
          ('weight_orig', 'weight_u', 'weight_v') if 'weight_orig' in tensors else ('weight',))
  lacking = [f'{module}.{k}' for k in need if k not in tensors]
  if lacking:
    raise common.ConversionError(f'missing keys: {", ".join(lacking)} (module {module} has '
                                 f'{sorted(tensors)})')
  if t.kind == 'norm':
    out[('batch_stats',) + t.path + ('mean',)] = tensors['running_mean']
    out[('batch_stats',) + t.path + ('var',)] = tensors['running_var']
    return out
  spectral = 'weight_orig' in tensors
  w = tensors['weight_orig' if spectral else 'weight']
  u, v = tensors.get('weight_u'), tensors.get('weight_v')
  b = tensors.get('bias')
  kind = t.kind
  if kind == 'fc':  # the trunk's first layer: a conv on S, or a linear on z (multimodal='vae')
    kind = 'conv' if w.ndim == 4 else 'linear'
    t = dataclasses.replace(t, in_map=t.in_map if kind == 'conv' else None,
                            out_chw_hw=t.out_chw_hw if kind == 'linear' else None)
  if t.out_chw_hw is not None:
    perm = chw_to_hwc(w.shape[0] // int(np.prod(t.out_chw_hw)), *t.out_chw_hw)
    w, b, u = w[perm], None if b is None else b[perm], None if u is None else u[perm]
  if t.in_chw_hw is not None:
    perm = chw_to_hwc(w.shape[1] // int(np.prod(t.in_chw_hw)), *t.in_chw_hw)
    w, v = w[:, perm], None if v is None else v[perm]
  w = _scatter(_scatter(w, 0, t.out_map), 1, t.in_map)
  kernel = common.linear_kernel(w) if kind == 'linear' else w.transpose(2, 3, 1, 0)
  out[('params',) + t.path + ('kernel',)] = kernel
  if b is not None:
    out[('params',) + t.path + ('bias',)] = _scatter(b, 0, t.out_map)
  if spectral:
    u = _scatter(u, 0, t.out_map)
    if kind == 'conv':  # v over (in, kh, kw) -> ours over (kh, kw, in)
      cin = tensors['weight_orig'].shape[1]
      v = _scatter(v.reshape(cin, *w.shape[2:]), 0, t.in_map).transpose(1, 2, 0).reshape(-1)
    w_mat = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1]).T  # [out, in], ours
    sn = ('batch_stats',) + t.path + ('sn',)
    out[sn + ('u',)] = u
    out[sn + ('v',)] = v
    out[sn + ('sigma',)] = np.float32(np.asarray(u, np.float64) @ w_mat @ np.asarray(v, np.float64))
  return out


@dataclasses.dataclass
class ConversionReport:
  """What happened to every key and leaf: `unused` {torch key: why}, `fresh` [our leaf paths that
  keep their initialisation], `converted` (number of our leaves filled)."""
  source: str
  files: dict[str, str] = dataclasses.field(default_factory=dict)
  unused: dict[str, str] = dataclasses.field(default_factory=dict)
  fresh: list[str] = dataclasses.field(default_factory=list)
  converted: int = 0

  def summary(self) -> str:
    lines = [f'{self.source}: {self.converted} leaves converted from '
             + ', '.join(f'{k}={v}' for k, v in self.files.items())]
    by_reason: dict[str, list[str]] = {}
    for key, why in self.unused.items():
      by_reason.setdefault(why, []).append(key)
    for why, keys in by_reason.items():
      lines.append(f'  unused ({why}): ' + ', '.join(keys))
    if self.fresh:
      parts = sorted({'{0}/{2}'.format(*p.split('/')) for p in self.fresh})
      lines.append(f'  kept fresh ({len(self.fresh)} leaves): ' + ', '.join(parts))
    return '\n'.join(lines)


def expected_variables(config: Any, network: str) -> Any:
  """Abstract {'params', 'batch_stats'?} of our `network` for `config` (no FLOPs)."""
  h, w = configuration.image_size(config)
  sem = jax.ShapeDtypeStruct((1, h, w, configuration.semantic_nc(config)), jnp.float32)
  img = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  rngs = {'params': jax.random.PRNGKey(0), 'noise': jax.random.PRNGKey(0)}
  if network == 'generator':
    module, args = build_generator(config), (sem,)
  elif network == 'discriminator':
    module, args = build_discriminator(config), (sem, img)
  else:
    module, args = build_style_encoder(config), (img,)
  return jax.eval_shape(lambda *a: module.init(rngs, *a, train=False), *args)


def _flat(tree: Any) -> dict[tuple[str, ...], Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def convert_state_dict(state: Mapping[str, np.ndarray], network: str, config: Any,
                       source: str, report: ConversionReport,
                       src_space: LabelSpace | None = None) -> dict:
  """One PyTorch state_dict (`network` in NETWORKS' values) -> our Flax variables for `config`.

  Records unused keys and fresh leaves in `report`; raises ConversionError naming unknown keys,
  missing parameters of converted components and shape mismatches.
  """
  if source not in SOURCES:
    raise ValueError(f'Unknown source {source!r}: expected one of {SOURCES}')
  configuration.validate_config(config)
  ctx = _make_ctx(config, source, src_space)
  groups: dict[str, dict[str, np.ndarray]] = {}
  unknown = []
  for key, value in state.items():
    module, leaf = _split_key(key)
    if leaf not in _LEAVES + _NORM_LEAVES:
      unknown.append(key)
      continue
    groups.setdefault(module, {})[leaf] = np.asarray(value)
  expected = _flat(expected_variables(config, network))
  present = {p[1] for p in expected}  # top-level sub-modules of our network
  got: dict[tuple[str, ...], Any] = {}
  origin: dict[tuple[str, ...], str] = {}
  for module, tensors in sorted(groups.items()):
    try:
      target = _TARGETS[network](module, ctx)
    except Unused as e:
      report.unused.update({f'{module}.{k}': str(e) for k in tensors})
      continue
    if target is None:
      unknown.extend(f'{module}.{k}' for k in tensors)
      continue
    if network == 'generator' and target.path[0] not in present:
      report.unused.update({f'{module}.{k}': f'no {target.path[0]} in this config'
                            for k in tensors})
      continue
    if 'num_batches_tracked' in tensors:
      report.unused[f'{module}.num_batches_tracked'] = 'BatchNorm step counter (momentum is fixed)'
    for path, value in _convert_module(module, tensors, target).items():
      got[path] = value
      origin[path] = module
  if unknown:
    raise common.ConversionError(
        f'{len(unknown)} keys of the {network} state_dict are not part of the {source} layout: '
        + ', '.join(sorted(unknown)))
  provided = PROVIDED[source] if network == 'generator' else None
  missing = [p for p in expected if p not in got
             and (provided is None or p[1] in provided)]
  extra = [p for p in got if p not in expected]
  shapes = [p for p in got if p in expected and tuple(np.shape(got[p])) != expected[p].shape]
  if missing or extra or shapes:
    lines = [f'The {source} {network} checkpoint does not fit the configured model:']
    if missing:
      lines.append('  missing (in the model, not in the checkpoint): '
                   + ', '.join('/'.join(p) for p in sorted(missing)))
    if extra:
      lines.append('  unexpected (no such leaf in the model): '
                   + ', '.join(f'{origin[p]} -> {"/".join(p)}' for p in sorted(extra)))
    if shapes:
      lines.append('  shape mismatch: ' + ', '.join(
          f'{origin[p]} -> {"/".join(p)} {tuple(np.shape(got[p]))} vs model '
          f'{expected[p].shape}' for p in sorted(shapes)))
    raise common.ConversionError('\n'.join(lines))
  report.fresh.extend(f'{network}/' + '/'.join(p) for p in sorted(expected) if p not in got)
  report.converted += len(got)
  return flax.traverse_util.unflatten_dict(
      {p: np.asarray(v, np.float32) for p, v in got.items()})


def checkpoint_files(path: str, epoch: str = 'latest') -> dict[str, str]:
  """{network: file} of a SPADE/ECGAN run: `path` is a `*_net_G.pth` file (its `_net_D` /
  `_net_E` siblings are used when present) or a checkpoint folder with `{epoch}_net_G.pth`."""
  if os.path.isdir(path):
    path = os.path.join(path, f'{epoch}_net_G.pth')
  m = re.fullmatch(r'(.*)_net_G(\.[A-Za-z]+)', path)
  if not m:
    raise FileNotFoundError(f'--input={path!r}: expected a SPADE/ECGAN `*_net_G.pth` file or its '
                            'checkpoint folder')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Generator checkpoint {path!r} does not exist')
  files = {}
  for letter, network in NETWORKS.items():
    candidate = f'{m[1]}_net_{letter}{m[2]}'
    if os.path.isfile(candidate):
      files[network] = candidate
  return files


def convert_checkpoint(path: str, config: Any, source: str, epoch: str = 'latest',
                       src_space: LabelSpace | None = None) -> tuple[dict, ConversionReport]:
  """A SPADE/ECGAN run's G (+ D, E) -> ({network: variables}, report) for `config`."""
  report = ConversionReport(source, checkpoint_files(path, epoch))
  if 'style_encoder' in report.files and config.model.multimodal != 'vae':
    report.unused[report.files.pop('style_encoder')] = 'style encoder, config.model.multimodal != vae'
  out = {}
  for network, file in report.files.items():
    out[network] = convert_state_dict(common.load_state_dict(file), network, config, source,
                                      report, src_space)
  return out, report


def save_converted(variables: dict, report: ConversionReport, path: str) -> str:
  """Writes the networks as flax msgpack and the report as `<path>.json`; returns `path`."""
  common.save_variables(variables, path)
  with open(path + '.json', 'w') as f:
    json.dump(dataclasses.asdict(report), f, indent=1)
  return path


def converted_summary(path: str) -> str:
  """The report of a converted file (its `<path>.json`) as readable lines."""
  with open(path + '.json') as f:
    return ConversionReport(**json.load(f)).summary()


# ------------------------------------------------------------------ warm start
def overlay(fresh: Any, converted: Any, what: str) -> tuple[Any, list[str]]:
  """`fresh` with every leaf of `converted` put in place; returns (tree, paths kept fresh).
  A converted leaf that the fresh tree lacks or shapes differently is a ConversionError."""
  flat_fresh, flat_conv = _flat(fresh), _flat(converted)
  bad = [('/'.join(p), np.shape(v), getattr(flat_fresh.get(p), 'shape', None))
         for p, v in flat_conv.items()
         if p not in flat_fresh or tuple(np.shape(v)) != tuple(np.shape(flat_fresh[p]))]
  if bad:
    raise common.ConversionError(
        f'{what}: converted leaves that do not fit this run\'s model (path, file shape, model '
        f'shape; convert with the same config): {bad}')
  merged = {p: (jnp.asarray(flat_conv[p], flat_fresh[p].dtype) if p in flat_conv else v)
            for p, v in flat_fresh.items()}
  kept = ['/'.join(p) for p in flat_fresh if p not in flat_conv]
  return flax.traverse_util.unflatten_dict(merged), kept


def apply_init_from(state: Any, path: str) -> Any:
  """A fresh TrainState warm-started from a file written by `save_converted`: generator (and
  its EMA copy), discriminator and style encoder params/batch_stats replaced by the converted
  ones; the rest (G_c, projection head, label generator, optimiser moments, bank) unchanged."""
  if not common.is_msgpack(path):
    raise FileNotFoundError(f'config.model.init_from={path!r} is not a .msgpack file written by '
                            'launch/convert_weights.py --kind=spade|ecgan')
  converted = common.load_variables(path)
  g_params, g_state = dict(state.g_params), dict(state.g_state)
  ema = dict(state.ema_params)
  d_params, d_state = state.d_params, state.d_state
  kept: dict[str, list[str]] = {}
  for network, variables in converted.items():
    if network == 'discriminator':
      d_params, kept[network] = overlay(d_params, variables['params'], f'{path}: {network}')
      d_state, _ = overlay(d_state, {k: v for k, v in variables.items() if k != 'params'},
                           f'{path}: {network}')
      continue
    if network not in g_params:
      log.warning('init_from: %s has a %s, which this run does not use', path, network)
      continue
    g_params[network], kept[network] = overlay(g_params[network], variables['params'],
                                               f'{path}: {network}')
    ema[network], _ = overlay(ema[network], variables['params'], f'{path}: {network}')
    g_state[network], _ = overlay(g_state[network],
                                  {k: v for k, v in variables.items() if k != 'params'},
                                  f'{path}: {network}')
  for network in ('generator', 'discriminator'):
    if network not in converted:
      log.warning('init_from: %s has no %s; it keeps its fresh initialisation', path, network)
  for network, paths in kept.items():
    parts = sorted({p.split('/')[0] for p in paths})
    log.info('init_from: %s %s loaded from %s; fresh: %s', network,
             'partly' if paths else 'fully', path, ', '.join(parts) or 'nothing')
  return state.replace(g_params=g_params, g_state=g_state, ema_params=ema, d_params=d_params,
                       d_state=d_state)
