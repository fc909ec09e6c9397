"""ecgan-jax side by side with the released PyTorch ECGAN: one full training iteration, on the
CPU or on one GPU.

  python benchmarks/vs_pytorch.py --reference=PATH                      # small and paper presets
  python benchmarks/vs_pytorch.py --reference=PATH --preset=small --rounds=2 --out=vs_pytorch.json
  python benchmarks/vs_pytorch.py --reference=PATH --platform=gpu --threads=0 --preset=paper \
      --dataset=cityscapes --size=512 --dtype=bfloat16

benchmarks/gpu_table.py drives this script's children for the GPU table of docs/performance.md.

PATH is a checkout of the released ECGAN code (github.com/Ha0Tang/ECGAN) at commit
984be019483caa563976ed97bb31981216553a89, the last one that has the networks (the later "clean up
code" commits delete models/). Nothing of it is part of this repository: each reference measurement
imports PATH in its own process and builds the generator, discriminator and both Adam optimisers
through the reference's own option parser (`options.train_options.TrainOptions().parse()`, with
an argv this script writes) and trainer (`trainers.pix2pix_trainer.Pix2PixTrainer`).

Method (docs/performance.md, "Side by side with PyTorch"):
* The same config on both sides: ADE20K's label space (150 classes + don't-care = 151 one-hot
  channels, no instance maps), --size x --size images (--dataset=cityscapes: 35 ids, no
  don't-care, --size x --size/2 images and the reference's 'more' upsampling, as its cityscapes
  dataset mode sets them), ngf = ndf, batch, 2 x 4-layer multi-scale
  D, hinge loss, feature matching, VGG off (reference `--no_vgg_loss`, ours `loss.lambda_vgg=0`,
  which removes VGG19 from our step). Our trunk output width is ngf and the G_e / G_i widths are
  32/16/8, as in the released generator.
* Presets: small = 64x64, ngf = ndf = 16, batch 8; paper = 256x256, ngf = ndf = 64, batch 1
  (--size / --ngf / --batch override the preset).
* Sides (--sides; any ablation row B1..B8 may be given): `ref` (the released ECGAN:
  trainer.run_generator_one_step + run_discriminator_one_step in its train.py's order, including
  its input preprocessing), `B4` (ours, ablation row B4: the
  released model's parts E, G_e, G_i, G_t, G_s) and `B8` (ours, full ECGAN++: adds G_l, the
  contrastive losses, G_c and the memory bank). One of our iterations is one call of the compiled
  training step (D update, G update with Adam, and our EMA / bank / G_l updates), on one CPU device.
* --platform=gpu runs both sides on the first GPU (the reference with --gpu_ids 0 and a
  torch.cuda.synchronize() closing each timed iteration; ours with JAX_PLATFORMS=cuda and no
  allocator preallocation) and adds each side's allocator peak (torch.cuda.max_memory_allocated,
  JAX's peak_bytes_in_use) and images/s to the table. --dtype=bfloat16 computes ours in bf16
  (params stay f32); the reference has no mixed precision and stays f32. --threads=0 leaves a
  child unpinned (use it on a GPU machine).
* Every measurement is a child process of this script (--child), pinned to the first --threads
  CPUs of the parent's affinity mask (which sizes XLA:CPU's thread pool) with
  torch.set_num_threads(--threads) and OMP/MKL_NUM_THREADS; the children run interleaved (ref, B4,
  B8, ref, B4, B8, ... for --rounds rounds) so load drift hits both sides alike.
* A child times --warmup untimed iterations, then --iters timed ones, on one synthetic random batch
  of the right geometry (no input pipeline). It reports the per-iteration times, the first
  iteration's time, peak RSS (getrusage ru_maxrss; also its value before the first iteration,
  which includes our compile, and the RSS after the last iteration) and, for ours, the step's
  compile time (lower + compile, with JAX's persistent compilation cache OFF, so it is a cold
  compile, unless --compilation_cache names a folder), init time and XLA's flop count of the
  compiled step.
* The parent prints per config and side the iteration min and median (over all rounds), compile /
  first iteration, peak memory, the ratio ours / reference (median and min), the machine (CPUs,
  load average before and after) and writes everything as JSON with --out.

The reference imports torchvision (VGG19 for its perceptual loss, transforms for its data loader)
and dill (option pickling), neither of which this measurement uses. Where one is not installed
(torchvision does not install beside torch 2.13 here), the child registers a placeholder module
under its name that raises `PlaceholderModuleUsed` if any attribute of it is used; the progress
line of each reference child names the placeholders. A reference that did need one fails loudly
instead of timing something else.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Callable

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_BENCH))

from absl import app, flags  # noqa: E402

from configs.default import ABLATIONS  # noqa: E402
sys.path.insert(0, _BENCH)
# Our config at the benchmark's geometry; gpu_table.py reads DATASETS through this module.
from timing import DATASETS, our_config  # noqa: E402

PRESETS = {'small': {'size': 64, 'ngf': 16, 'batch': 8},
           'paper': {'size': 256, 'ngf': 64, 'batch': 1}}
SIDES = ('ref', 'B4', 'B8')  # the defaults; any ablation row B1..B8 is accepted
REFERENCE_COMMIT = '984be019483caa563976ed97bb31981216553a89'
# What a checkout must contain (relative paths) for this benchmark to build the reference.
REFERENCE_FILES = ('options/train_options.py', 'trainers/pix2pix_trainer.py',
                   'models/pix2pix_model.py')
# Modules the reference imports but the timed iteration never uses (VGG off, no data loader, no
# option pickling): a placeholder stands in where one is not installed.
OPTIONAL_MODULES = ('torchvision', 'torchvision.transforms', 'torchvision.models', 'dill')
PLATFORMS = ('cpu', 'gpu')

_REFERENCE = flags.DEFINE_string('reference', None, 'Checkout of the released ECGAN code '
                                 f'(Ha0Tang/ECGAN at commit {REFERENCE_COMMIT[:7]}).')
_PRESET = flags.DEFINE_list('preset', ['small', 'paper'], f'Configs to run: {", ".join(PRESETS)}.')
_SIDES = flags.DEFINE_list('sides', list(SIDES), 'ref (released PyTorch), B4, B8 (ecgan-jax).')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Interleaved rounds (one child per side per round).')
_ITERS = flags.DEFINE_integer('iters', 5, 'Timed iterations per child.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed iterations per child before timing.')
_THREADS = flags.DEFINE_integer('threads', 2, 'CPU threads (and pinned CPUs) per child.')
_SIZE = flags.DEFINE_integer('size', 0, 'Image width (height = width / the dataset\'s aspect '
                             'ratio); 0 = the preset\'s.')
_DATASET = flags.DEFINE_enum('dataset', 'ade20k', list(DATASETS), 'Label space and aspect ratio.')
_PLATFORM = flags.DEFINE_enum('platform', 'cpu', list(PLATFORMS),
                              'cpu (XLA:CPU and torch CPU) or gpu (the first GPU, both sides).')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Our compute dtype (model.dtype); the reference is always float32.')
_NGF = flags.DEFINE_integer('ngf', 0, 'ngf = ndf; 0 = the preset\'s.')
_BATCH = flags.DEFINE_integer('batch', 0, 'Batch size; 0 = the preset\'s.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here.')
_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Persistent JAX compilation cache folder for our children; unset '
    '(the default): off, so the compile time is a cold compile.')
_CHILD_TIMEOUT = flags.DEFINE_integer('child_timeout', 3600, 'Seconds before a child is killed.')
_CHILD = flags.DEFINE_string('child', None, 'Internal: run one measurement (JSON spec).')


class PlaceholderModuleUsed(RuntimeError):
  """The timed reference used a module that is not installed and was replaced by a placeholder."""


class _PlaceholderModule(types.ModuleType):
  """Stands in for an optional module of the reference; any use of an attribute raises."""

  def __getattr__(self, attr: str) -> Any:
    if attr.startswith('__'):
      raise AttributeError(attr)
    raise PlaceholderModuleUsed(
        f'{self.__name__}.{attr}: {self.__name__} is not installed and the benchmark registered a '
        'placeholder for it, assuming the timed iteration does not use it; this reference does')


def install_placeholders(names: tuple[str, ...] = OPTIONAL_MODULES) -> list[str]:
  """Registers a placeholder in sys.modules for each of `names` that cannot be imported (a
  submodule is also set as an attribute of its parent). Returns the names replaced."""
  replaced = []
  for name in names:
    if name in sys.modules:
      continue
    parent = name.rpartition('.')[0]
    if not (parent and isinstance(sys.modules.get(parent), _PlaceholderModule)):
      try:
        if importlib.util.find_spec(name) is not None:
          continue
      except (ImportError, ValueError):
        pass
    module = _PlaceholderModule(name, f'vs_pytorch placeholder: {name} is not installed')
    sys.modules[name] = module
    if parent in sys.modules:
      setattr(sys.modules[parent], name.rpartition('.')[2], module)
    replaced.append(name)
  return replaced


def check_reference(path: str | None) -> str | None:
  """None if `path` looks like a usable ECGAN checkout, else a one-line reason and what to do."""
  how = (f'clone github.com/Ha0Tang/ECGAN, `git checkout {REFERENCE_COMMIT[:7]}` and pass '
         '--reference=<that folder>')
  if not path:
    return f'--reference is required: {how}'
  if not os.path.isdir(path):
    return f'--reference={path} is not a folder: {how}'
  missing = [f for f in REFERENCE_FILES if not os.path.isfile(os.path.join(path, f))]
  if missing:
    hint = (' (a checkout after the "clean up code" commits, which delete models/?)'
            if any(f.startswith('models/') for f in missing) else '')
    return f'--reference={path} has no {", ".join(missing)}{hint}: {how}'
  return None


# ------------------------------------------------------------------------------------ children
def _pin_threads(threads: int) -> list[int]:
  """Pins this process to the first `threads` CPUs it may run on (all of them if `threads` is
  0); returns them."""
  allowed = sorted(os.sched_getaffinity(0))
  if threads <= 0:
    return allowed
  cpus = allowed[:threads]
  os.sched_setaffinity(0, cpus)
  return cpus


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mib() -> float | None:
  """The process's resident memory now (VmRSS), None where /proc is not available."""
  try:
    with open('/proc/self/status') as f:
      return next(int(line.split()[1]) / 1024 for line in f if line.startswith('VmRSS:'))
  except (OSError, StopIteration):
    return None


def _time_iterations(step: Callable[[], Any], warmup: int, iters: int) -> dict[str, Any]:
  """Times `step` (one full iteration, returns when its results are computed). Also records the
  peak RSS before the first iteration (build, init, compile) and the RSS after the last."""
  peak_before = _peak_rss_mib()
  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  for _ in range(max(warmup - 1, 0)):
    step()
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return {'first_iter_s': first, 'iter_s': times, 'peak_rss_before_iters_mib': peak_before,
          'rss_end_mib': _rss_mib()}


def _dataset(spec: dict[str, Any]) -> dict[str, Any]:
  return DATASETS[spec.get('dataset', 'ade20k')]


def spec_hw(spec: dict[str, Any]) -> tuple[int, int]:
  """(height, width) of the spec's images: width = size, height = size / the dataset's aspect."""
  return int(round(spec['size'] / _dataset(spec)['aspect'])), spec['size']


def reference_argv(spec: dict[str, Any], workdir: str) -> list[str]:
  """The reference's train.py options for the benchmark config (no VGG, no instance maps; the
  dataset's label space through the reference's own --dataset_mode; GPU 0 or the CPU)."""
  s, ds = str(spec['size']), _dataset(spec)
  gpu = '0' if spec.get('platform') == 'gpu' else '-1'
  dontcare = ['--contain_dontcare_label'] if ds['dontcare'] else []
  return ['--name', 'vs_pytorch', '--gpu_ids', gpu, '--checkpoints_dir', workdir,
          '--dataroot', workdir, '--dataset_mode', spec.get('dataset', 'ade20k'),
          '--label_nc', str(spec['label_nc']), *dontcare, '--no_instance', '--load_size', s,
          '--crop_size', s, '--aspect_ratio', str(ds['aspect']), '--batchSize', str(spec['batch']),
          '--ngf', str(spec['ngf']), '--ndf', str(spec['ngf']), '--no_vgg_loss', '--nThreads', '0']


def _child_reference(spec: dict[str, Any]) -> dict[str, Any]:
  import torch  # pylint: disable=import-outside-toplevel

  if spec['threads'] > 0:
    torch.set_num_threads(spec['threads'])
    torch.set_num_interop_threads(spec['threads'])
  gpu = spec.get('platform') == 'gpu'
  torch.manual_seed(0)
  replaced = install_placeholders()
  if replaced:
    print(f'vs_pytorch: not installed, placeholder registered: {", ".join(replaced)}',
          file=sys.stderr)
  sys.path.insert(0, os.path.abspath(spec['reference']))
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(sys.stderr):
    argv, sys.argv = sys.argv, ['train.py'] + reference_argv(spec, workdir)
    try:
      from options.train_options import TrainOptions  # pylint: disable=import-outside-toplevel
      opt = TrainOptions().parse()
    finally:
      sys.argv = argv
    from trainers.pix2pix_trainer import Pix2PixTrainer  # pylint: disable=import-outside-toplevel
    trainer = Pix2PixTrainer(opt)
    (h, w), b = spec_hw(spec), spec['batch']
    nc = spec['label_nc'] + (1 if _dataset(spec)['dontcare'] else 0)
    g = torch.Generator().manual_seed(0)
    data = {'label': torch.randint(0, nc, (b, 1, h, w), generator=g),
            'instance': torch.zeros(b, 1, h, w),
            'image': torch.rand(b, 3, h, w, generator=g) * 2 - 1,
            'edge': torch.where(torch.rand(b, 3, h, w, generator=g) < 0.1, 1.0, -1.0),
            'path': ['synthetic'] * b}

    def step():
      trainer.run_generator_one_step(data)
      trainer.run_discriminator_one_step(data)
      if gpu:  # the step only queued its kernels
        torch.cuda.synchronize()

    result = _time_iterations(step, spec['warmup'], spec['iters'])
  count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
  model = trainer.pix2pix_model_on_one_gpu
  if gpu:
    result.update(peak_device_mib=torch.cuda.max_memory_allocated() / 2**20,
                  device_kind=torch.cuda.get_device_name(0))
  return {**result, 'compile_s': None, 'placeholders': replaced,
          'params': {'G': count(model.netG), 'D': count(model.netD)},
          'torch': torch.__version__, 'torch_threads': torch.get_num_threads()}


def _child_ours(spec: dict[str, Any]) -> dict[str, Any]:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  import timing  # pylint: disable=import-outside-toplevel  (benchmarks/timing.py)
  from ecgan_jax.models import count_tree  # pylint: disable=import-outside-toplevel
  from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
  from ecgan_jax.training import setup  # pylint: disable=import-outside-toplevel

  _runtime.use_default_xla_flags()  # the commands' XLA flags (before any device use)
  if spec.get('compilation_cache'):
    _runtime.enable_compilation_cache(spec['compilation_cache'])
  else:
    jax.config.update('jax_enable_compilation_cache', False)  # the compile time is a cold one
  config = our_config(spec['side'], spec['size'], spec['ngf'], spec['batch'], spec['label_nc'],
                      spec.get('dataset', 'ade20k'), spec.get('dtype', 'float32'))
  t_start = time.perf_counter()
  progress = lambda what: print(f'vs_pytorch child: {time.perf_counter() - t_start:.1f} s {what}',  # noqa: E731
                                file=sys.stderr, flush=True)
  run = setup.build(config, num_devices=1)
  t0 = time.perf_counter()
  host_state = run.initial_state()
  frozen_host = run.frozen()
  init_s = time.perf_counter() - t0
  progress(f'initialised ({init_s:.1f} s); compiling the step')
  runner = run.runner(parallelism='pmap', devices=jax.local_devices()[:1])
  batch = runner.put_batch(timing.synthetic_batch(config, 1, spec['batch'],
                                                  np.random.default_rng(0)))
  box = {'state': runner.put_replicated(host_state)}
  frozen = runner.put_replicated(frozen_host)
  t0 = time.perf_counter()
  compiled = runner.lower(box['state'], batch, frozen).compile()
  compile_s = time.perf_counter() - t0
  progress(f'compiled ({compile_s:.1f} s)')
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost['flops']) if cost and 'flops' in cost else None
  info = {'compile_s': compile_s, 'init_s': init_s, 'flops': flops,
          'params': {'G': count_tree(host_state.g_params), 'D': count_tree(host_state.d_params)},
          'jax': jax.__version__, 'backend': jax.default_backend(),
          'device_kind': jax.devices()[0].device_kind, 'dtype': config.model.dtype,
          'compilation_cache': spec.get('compilation_cache') or 'off'}
  try:  # XLA's own account of the step's device buffers (arguments + outputs + temporaries)
    mem = compiled.memory_analysis()
    info['xla_memory_mib'] = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                              + mem.temp_size_in_bytes - mem.alias_size_in_bytes) / 2**20
  except Exception:  # pylint: disable=broad-except  (not every backend reports it)
    pass
  if spec.get('compile_only'):  # fills the persistent cache for a later timed child
    return {**info, 'iter_s': [], 'first_iter_s': None,
            'peak_rss_before_iters_mib': _peak_rss_mib(), 'rss_end_mib': _rss_mib()}

  def step():
    box['state'], metrics = compiled(box['state'], batch, frozen)
    jax.block_until_ready((box['state'], metrics))

  result = _time_iterations(step, spec['warmup'], spec['iters'])
  peak = timing.peak_bytes()
  if peak is not None:
    result['peak_device_mib'] = peak / 2**20
  return {**result, **info}


def run_child(spec: dict[str, Any]) -> None:
  """Runs one measurement and prints its result as the last line of stdout (JSON)."""
  cpus = _pin_threads(spec['threads'])
  t0 = time.perf_counter()
  result = _child_reference(spec) if spec['side'] == 'ref' else _child_ours(spec)
  result.update(side=spec['side'], cpus=cpus, total_s=time.perf_counter() - t0,
                peak_rss_mib=_peak_rss_mib())
  print(json.dumps(result), flush=True)


# -------------------------------------------------------------------------------------- parent
def child_env(threads: int, platform_: str = 'cpu') -> dict[str, str]:
  """Environment of a child: `threads` BLAS/OpenMP threads (all if 0), no simulated devices, no
  persistent compilation cache (unless the spec names one); JAX on the CPU, or on the GPU with
  its allocator growing on demand (no 75% preallocation: children may overlap while compiling,
  and the peak it reports is the step's)."""
  env = dict(os.environ)
  env.update(PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
  if platform_ == 'gpu':
    env.update(JAX_PLATFORMS='cuda', XLA_PYTHON_CLIENT_PREALLOCATE='false')
  else:
    env.update(JAX_PLATFORMS='cpu')
  if threads > 0:
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
  flags_ = [f for f in env.get('XLA_FLAGS', '').split()
            if not f.startswith('--xla_force_host_platform_device_count')]
  env['XLA_FLAGS'] = ' '.join(flags_)
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  return env


def measure(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
  """Runs one child; its JSON result, or {'error': ...} with the tail of its stderr."""
  cmd = [sys.executable, os.path.abspath(__file__), '--child=' + json.dumps(spec)]
  try:
    proc = subprocess.run(cmd, env=child_env(spec['threads'], spec.get('platform', 'cpu')),
                          capture_output=True, text=True,
                          timeout=timeout, check=False)
  except subprocess.TimeoutExpired as e:  # keep what the child said it was doing
    err = e.stderr.decode(errors='replace') if isinstance(e.stderr, bytes) else (e.stderr or '')
    return {'side': spec['side'], 'error': f'timed out after {timeout:.0f} s',
            'stderr_tail': err.strip().splitlines()[-12:]}
  last = [line for line in proc.stdout.splitlines() if line.startswith('{')]
  if proc.returncode or not last:
    tail = (proc.stderr.strip().splitlines() or ['(no output)'])[-12:]
    return {'side': spec['side'], 'error': f'exit {proc.returncode}', 'stderr_tail': tail}
  return json.loads(last[-1])


def summarize(runs: list[dict[str, Any]], sides: list[str]) -> list[dict[str, Any]]:
  """One row per side: iteration min / median over all its rounds, compile, first iteration,
  peak memory, and ours / reference ratios."""
  rows = []
  for side in sides:
    ok = [r for r in runs if r['side'] == side and 'error' not in r]
    times = [t for r in ok for t in r['iter_s']]
    if not times:
      rows.append({'side': side, 'error': '; '.join(r['error'] for r in runs
                                                   if r['side'] == side) or 'not run'})
      continue
    compiles = [r['compile_s'] for r in ok if r.get('compile_s') is not None]
    device_peaks = [r['peak_device_mib'] for r in ok if r.get('peak_device_mib') is not None]
    rows.append({'side': side, 'children': len(ok), 'iterations': len(times),
                 'iter_min_s': min(times), 'iter_median_s': statistics.median(times),
                 'compile_s': statistics.median(compiles) if compiles else None,
                 'first_iter_s': statistics.median(r['first_iter_s'] for r in ok),
                 'peak_rss_mib': max(r['peak_rss_mib'] for r in ok),
                 'peak_device_mib': max(device_peaks) if device_peaks else None,
                 'gflops': ok[0].get('flops') / 1e9 if ok[0].get('flops') else None})
  ref = next((r for r in rows if r['side'] == 'ref' and 'error' not in r), None)
  for r in rows:
    if ref and r['side'] != 'ref' and 'error' not in r:
      r['ratio_median'] = r['iter_median_s'] / ref['iter_median_s']
      r['ratio_min'] = r['iter_min_s'] / ref['iter_min_s']
  return rows


def format_table(name: str, geometry: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  fmt = lambda v, f: '-' if v is None else format(v, f)  # noqa: E731
  label = lambda side: 'released PyTorch' if side == 'ref' else f'ecgan-jax {side}'  # noqa: E731
  h, w = spec_hw(geometry)
  device = any(r.get('peak_device_mib') is not None for r in rows)
  lines = [f'{name}: {geometry.get("dataset", "ade20k")} {h}x{w} (HxW), ngf = ndf = '
           f'{geometry["ngf"]}, batch {geometry["batch"]}'
           + (f', ours in {geometry["dtype"]}' if geometry.get('dtype', 'float32') != 'float32'
              else ''),
           f'  {"side":18s} {"it min s":>9s} {"it med s":>9s} {"compile s":>9s} {"1st it s":>9s} '
           f'{"peak MiB":>9s} {"GFLOP":>8s} {"/ref med":>8s} {"/ref min":>8s}'
           + (f' {"dev MiB":>9s} {"img/s":>8s}' if device else '')]
  for r in rows:
    if 'error' in r:
      lines.append(f'  {label(r["side"]):18s} FAILED: {r["error"]}')
      continue
    lines.append(
        f'  {label(r["side"]):18s} {r["iter_min_s"]:9.3f} {r["iter_median_s"]:9.3f} '
        f'{fmt(r["compile_s"], "9.1f"):>9s} {r["first_iter_s"]:9.3f} {r["peak_rss_mib"]:9.0f} '
        f'{fmt(r["gflops"], "8.1f"):>8s} {fmt(r.get("ratio_median"), "8.2f"):>8s} '
        f'{fmt(r.get("ratio_min"), "8.2f"):>8s}'
        + (f' {fmt(r.get("peak_device_mib"), "9.0f"):>9s} '
           f'{geometry["batch"] / r["iter_median_s"]:8.2f}' if device else ''))
  return '\n'.join(lines)


def main(argv):
  del argv
  if _CHILD.value:
    run_child(json.loads(_CHILD.value))
    return 0
  problem = check_reference(_REFERENCE.value)
  bad = ([f'--preset={p} is not one of {", ".join(PRESETS)}' for p in _PRESET.value
          if p not in PRESETS]
         + [f'--sides={s} is not ref or an ablation row {", ".join(ABLATIONS)}'
            for s in _SIDES.value if s != 'ref' and s not in ABLATIONS])
  available = len(os.sched_getaffinity(0))
  if _THREADS.value < 0 or _THREADS.value > available:
    bad.append(f'--threads={_THREADS.value} must be between 0 (all, unpinned) and the '
               f'{available} CPUs available')
  if problem or bad:
    sys.exit(f'vs_pytorch: error: {problem or bad[0]}')
  command = ' '.join(shlex.quote(a) for a in sys.argv)
  started = datetime.datetime.now().isoformat(timespec='seconds')
  machine = {'cpu_count': os.cpu_count(), 'cpus_available': available,
             'processor': platform.processor() or platform.machine(),
             'python': platform.python_version(), 'load_before': os.getloadavg()}
  print(f'vs_pytorch: {command}\n{started}; machine: {available} CPUs available '
        f'({os.cpu_count()} total), '
        f'load average {" ".join(f"{x:.2f}" for x in machine["load_before"])}; '
        f'{_THREADS.value} threads per child; reference {os.path.abspath(_REFERENCE.value)}',
        flush=True)
  results = []
  for name in _PRESET.value:
    geometry = {k: (override or PRESETS[name][k]) for k, override in
                (('size', _SIZE.value), ('ngf', _NGF.value), ('batch', _BATCH.value))}
    geometry.update(dataset=_DATASET.value, platform=_PLATFORM.value, dtype=_DTYPE.value)
    runs = []
    for rnd in range(_ROUNDS.value):
      for side in _SIDES.value:
        spec = {'side': side, 'reference': os.path.abspath(_REFERENCE.value),
                'threads': _THREADS.value, 'iters': _ITERS.value, 'warmup': _WARMUP.value,
                'label_nc': DATASETS[_DATASET.value]['label_nc'],
                'compilation_cache': _CACHE.value, **geometry}
        r = measure(spec, _CHILD_TIMEOUT.value)
        r['round'] = rnd
        runs.append(r)
        if 'error' in r:
          print(f'  {name} round {rnd + 1}/{_ROUNDS.value} {side}: FAILED ({r["error"]})\n    '
                + '\n    '.join(r.get('stderr_tail', [])), flush=True)
        else:
          compile_ = f', compile {r["compile_s"]:.1f} s' if r.get('compile_s') else ''
          if r.get('placeholders'):  # not installed, unused by the timed iteration
            compile_ += f', placeholder modules for {", ".join(r["placeholders"])}'
          print(f'  {name} round {rnd + 1}/{_ROUNDS.value} {side}: median '
                f'{statistics.median(r["iter_s"]):.3f} s/it, first {r["first_iter_s"]:.2f} s'
                f'{compile_}, peak RSS {r["peak_rss_mib"]:.0f} MiB'
                + (f', device peak {r["peak_device_mib"]:.0f} MiB'
                   if r.get('peak_device_mib') is not None else '') + ', load '
                f'{os.getloadavg()[0]:.2f}', flush=True)
    rows = summarize(runs, _SIDES.value)
    results.append({'preset': name, **geometry, 'rows': rows, 'runs': runs})
    print(format_table(name, geometry, rows), flush=True)
  machine['load_after'] = os.getloadavg()
  print('load average after: ' + ' '.join(f'{x:.2f}' for x in machine['load_after']))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump({'command': command, 'started': started,
                 'finished': datetime.datetime.now().isoformat(timespec='seconds'),
                 'machine': machine, 'threads': _THREADS.value, 'rounds': _ROUNDS.value,
                 'iters': _ITERS.value, 'warmup': _WARMUP.value,
                 'reference': os.path.abspath(_REFERENCE.value), 'results': results}, f, indent=1)
    print(f'wrote {_OUT.value}')
  failed = any('error' in r for res in results for r in res['runs'])
  return 1 if failed else 0


if __name__ == '__main__':
  app.run(main)
