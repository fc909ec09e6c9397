"""The GPU table of docs/performance.md: ecgan-jax against the released PyTorch ECGAN on one GPU.

  python benchmarks/gpu_table.py --reference=PATH --out=gpu_table.json
  python benchmarks/gpu_table.py --reference=PATH --cases=ade20k:B8:float32:1,ade20k:ref:float32:1

Each case is DATASET:SIDE:DTYPE:BATCH at the paper's geometry (ngf = ndf = 64; ADE20K 256x256,
Cityscapes 512x256 (WxH)), VGG off on both sides, and is measured by one child of
benchmarks/vs_pytorch.py (same method, same configs; see its docstring). This script adds:

* A compile phase: every case of ours is first compiled in its own process, up to --jobs at a
  time, into one persistent compilation cache (--cache_dir, default a new temporary folder). The
  compile time it reports is that cold compile (taken while the other compiles ran beside it).
  The timed children then load their program from the cache, one child at a time, so no two
  measurements share the GPU.
* Per case: seconds per iteration (median of --iters after --warmup), images/s, the allocator's
  peak device memory, XLA's flop count of the step, the TFLOP/s it achieves and MFU against
  --peak_tflops (default 989: the H100/H200 SXM dense bf16 peak; say which peak a number uses),
  and ours / reference speed at the same dataset and batch. On a GPU, XLA's cost analysis
  leaves out convolutions that run as cuDNN custom calls (94.5 GFLOP for B8 at the paper size,
  against 1,375 from the CPU compile of the same step), so its TFLOP/s and MFU are lower bounds.
* --deadline_s: cases not started by then are reported as skipped, so a time-boxed run (a lent
  GPU) still prints its table. The JSON (--out) is rewritten after every child.
* --phases=compile and then --phases=time (same --cache_dir and --out) split the two phases, so
  other GPU-light work can run beside the compiles but not beside the timings; the time phase
  takes the cold compile times from the JSON the compile phase wrote.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _BENCH)
sys.path.insert(0, os.path.dirname(_BENCH))

from absl import app, flags  # noqa: E402

import vs_pytorch  # noqa: E402  (benchmarks/vs_pytorch.py)

DEFAULT_CASES = (
    # batch 1, ADE20K: the paper's memory figure and the headline speed.
    'ade20k:ref:float32:1', 'ade20k:B8:float32:1', 'ade20k:B8:bfloat16:1',
    # Cityscapes at 512x256.
    'cityscapes:ref:float32:1', 'cityscapes:B8:float32:1',
    # A large batch.
    'ade20k:ref:float32:16', 'ade20k:B8:float32:16', 'ade20k:B8:bfloat16:16',
)
WIDTH = {'ade20k': 256, 'cityscapes': 512}

# Flags shared with vs_pytorch.py (imported above, which defines them): --reference, --ngf,
# --size (width; 0 = the dataset's: ADE20K 256, Cityscapes 512), --platform (gpu here; cpu only
# to try the script at a micro size), --iters, --warmup, --child_timeout, --out. Its other flags
# (--preset, --sides, --rounds, --batch, --dataset, --dtype, --threads, --compilation_cache) are
# --cases and --cache_dir here, and rejected.
_REFERENCE, _NGF, _SIZE, _PLATFORM = (vs_pytorch._REFERENCE, vs_pytorch._NGF, vs_pytorch._SIZE,
                                      vs_pytorch._PLATFORM)
_ITERS, _WARMUP, _TIMEOUT, _OUT = (vs_pytorch._ITERS, vs_pytorch._WARMUP,
                                   vs_pytorch._CHILD_TIMEOUT, vs_pytorch._OUT)
for _name, _default in (('platform', 'gpu'), ('iters', 10), ('warmup', 3), ('ngf', 64),
                        ('child_timeout', 900)):
  flags.FLAGS.set_default(_name, _default)
NOT_HERE = ('preset', 'sides', 'rounds', 'batch', 'dataset', 'dtype', 'threads',
            'compilation_cache', 'child')
_CASES = flags.DEFINE_list('cases', list(DEFAULT_CASES), 'DATASET:SIDE:DTYPE:BATCH, in order.')
_JOBS = flags.DEFINE_integer('jobs', 4, 'Compiles at a time in the compile phase.')
_CACHE = flags.DEFINE_string('cache_dir', None, 'Persistent compilation cache (default: new).')
_PEAK = flags.DEFINE_float('peak_tflops', 989.0, 'Peak TFLOP/s for MFU.')
_DEADLINE = flags.DEFINE_float('deadline_s', 0, 'Start no case after this many seconds (0: none).')
_PHASES = flags.DEFINE_list('phases', ['compile', 'time'], 'compile and/or time.')


def parse_case(text: str) -> dict[str, Any]:
  """'ade20k:B8:float32:1' -> {'dataset', 'side', 'dtype', 'batch'}; ValueError if malformed."""
  parts = text.split(':')
  if len(parts) != 4:
    raise ValueError(f'case {text!r} is not DATASET:SIDE:DTYPE:BATCH')
  dataset, side, dtype, batch = parts
  if dataset not in vs_pytorch.DATASETS:
    raise ValueError(f'case {text!r}: dataset must be one of {", ".join(vs_pytorch.DATASETS)}')
  if side != 'ref' and side not in vs_pytorch.ABLATIONS:
    raise ValueError(f'case {text!r}: side must be ref or an ablation row B1..B8')
  if dtype not in ('float32', 'bfloat16') or (side == 'ref' and dtype != 'float32'):
    raise ValueError(f'case {text!r}: dtype must be float32 or bfloat16 (the reference: float32)')
  if not batch.isdigit() or int(batch) < 1:
    raise ValueError(f'case {text!r}: batch must be a positive integer')
  return {'dataset': dataset, 'side': side, 'dtype': dtype, 'batch': int(batch)}


def child_spec(case: dict[str, Any], cache: str, **kwargs) -> dict[str, Any]:
  """vs_pytorch's child spec for a case (all CPUs, unpinned; the shared compilation cache)."""
  return {**case, 'reference': os.path.abspath(_REFERENCE.value), 'threads': 0,
          'platform': _PLATFORM.value, 'iters': _ITERS.value, 'warmup': _WARMUP.value,
          'size': _SIZE.value or WIDTH[case['dataset']], 'ngf': _NGF.value,
          'label_nc': vs_pytorch.DATASETS[case['dataset']]['label_nc'],
          'compilation_cache': cache, **kwargs}


def row(case: dict[str, Any], result: dict[str, Any], cold: dict[str, Any] | None,
        peak_tflops: float) -> dict[str, Any]:
  """One table row from a timed child (and its compile-phase child, for ours)."""
  out = {**case}
  if 'error' in result:
    return {**out, 'error': result['error'], 'stderr_tail': result.get('stderr_tail')}
  med = statistics.median(result['iter_s'])
  flops = result.get('flops')
  out.update(iter_median_s=med, iter_min_s=min(result['iter_s']), img_per_s=case['batch'] / med,
             peak_device_gib=(result['peak_device_mib'] / 1024
                              if result.get('peak_device_mib') is not None else None),
             gflop=flops / 1e9 if flops else None,
             tflops_per_s=flops / med / 1e12 if flops else None,
             mfu=flops / med / (peak_tflops * 1e12) if flops else None,
             compile_cold_s=(cold or {}).get('compile_s'),
             compile_cached_s=result.get('compile_s'),
             xla_memory_gib=((cold or result).get('xla_memory_mib') or 0) / 1024 or None,
             device_kind=result.get('device_kind'),
             versions={k: result[k] for k in ('jax', 'torch') if k in result})
  return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
  """img/s of ours over the reference's at the same dataset and batch."""
  for r in rows:
    ref = next((x for x in rows if x['side'] == 'ref' and x['dataset'] == r['dataset']
                and x['batch'] == r['batch'] and 'img_per_s' in x), None)
    if r['side'] != 'ref' and 'img_per_s' in r and ref:
      r['speedup_vs_ref'] = r['img_per_s'] / ref['img_per_s']


def format_rows(rows: list[dict[str, Any]]) -> str:
  fmt = lambda v, f: '-' if v is None else format(v, f)  # noqa: E731
  lines = [f'{"dataset":10s} {"side":4s} {"dtype":8s} {"batch":>5s} {"s/it":>8s} {"img/s":>8s} '
           f'{"peak GiB":>8s} {"GFLOP":>8s} {"TFLOP/s":>8s} {"MFU":>6s} {"x ref":>6s} '
           f'{"compile":>8s}']
  for r in rows:
    head = f'{r["dataset"]:10s} {r["side"]:4s} {r["dtype"]:8s} {r["batch"]:5d}'
    if 'skipped' in r or 'error' in r:
      lines.append(f'{head} {"SKIPPED" if "skipped" in r else "FAILED"}: '
                   f'{r.get("skipped") or r.get("error")}')
      continue
    lines.append(
        f'{head} {r["iter_median_s"]:8.4f} {r["img_per_s"]:8.2f} '
        f'{fmt(r["peak_device_gib"], "8.2f"):>8s} {fmt(r["gflop"], "8.0f"):>8s} '
        f'{fmt(r["tflops_per_s"], "8.1f"):>8s} '
        f'{fmt(None if r["mfu"] is None else 100 * r["mfu"], "5.1f"):>5s}% '
        f'{fmt(r.get("speedup_vs_ref"), "6.2f"):>6s} {fmt(r["compile_cold_s"], "8.1f"):>8s}')
  return '\n'.join(lines)


def compile_phase(cases: list[dict[str, Any]], cache: str, start: float) -> dict[str, Any]:
  """Compiles every case of ours into `cache`, up to --jobs at a time; {case text: result}."""
  results = {}
  with concurrent.futures.ThreadPoolExecutor(max(_JOBS.value, 1)) as pool:
    futures = {pool.submit(vs_pytorch.measure, child_spec(c, cache, compile_only=True),
                           _TIMEOUT.value): text
               for text, c in zip(_CASES.value, cases) if c['side'] != 'ref'}
    for fut in concurrent.futures.as_completed(futures):
      text = futures[fut]
      results[text] = r = fut.result()
      what = (f'compile {r["compile_s"]:.1f} s, XLA memory {r.get("xla_memory_mib", 0):.0f} MiB'
              if 'error' not in r
              else f'FAILED ({r["error"]}): ' + ' | '.join(r.get('stderr_tail', [])))
      print(f'  [{time.monotonic() - start:6.0f} s] compiled {text}: {what}', flush=True)
  return results


def main(argv):
  del argv
  problem = vs_pytorch.check_reference(_REFERENCE.value)
  try:
    cases = [parse_case(c) for c in _CASES.value]
  except ValueError as e:
    problem = problem or str(e)
  given = [n for n in NOT_HERE if flags.FLAGS[n].present]
  if given:
    problem = problem or (f'--{given[0]} is a vs_pytorch.py flag; here the cases are --cases '
                          '(DATASET:SIDE:DTYPE:BATCH) and the cache --cache_dir')
  bad_phase = [p for p in _PHASES.value if p not in ('compile', 'time')]
  if bad_phase:
    problem = problem or f'--phases: {bad_phase[0]!r} is not compile or time'
  if 'compile' not in _PHASES.value and not _CACHE.value:
    problem = problem or '--phases=time needs the --cache_dir its compile phase filled'
  if problem:
    sys.exit(f'gpu_table: error: {problem}')
  start = time.monotonic()
  cache = _CACHE.value or tempfile.mkdtemp(prefix='ecgan_gpu_table_cache_')
  started = datetime.datetime.now().isoformat(timespec='seconds')
  report: dict[str, Any] = {'command': ' '.join(sys.argv), 'started': started,
                            'peak_tflops': _PEAK.value, 'iters': _ITERS.value,
                            'warmup': _WARMUP.value, 'ngf': _NGF.value, 'rows': []}

  def save():
    if _OUT.value:
      with open(_OUT.value, 'w') as f:
        json.dump(report, f, indent=1)

  print(f'gpu_table: {len(cases)} cases, phases {",".join(_PHASES.value)}, cache {cache}',
        flush=True)
  if 'compile' in _PHASES.value:
    report['compile'] = compile_phase(cases, cache, start)
    report['compile_phase_s'] = time.monotonic() - start
    save()
  elif _OUT.value and os.path.exists(_OUT.value):  # the cold compiles of an earlier compile phase
    with open(_OUT.value) as f:
      earlier = json.load(f)
    report['compile'] = earlier.get('compile', {})
    report['compile_phase_s'] = earlier.get('compile_phase_s')
  if 'time' not in _PHASES.value:
    return 1 if any('error' in r for r in report['compile'].values()) else 0
  start = time.monotonic()
  cold = {i: report.get('compile', {}).get(_CASES.value[i]) for i in range(len(cases))}
  for i, c in enumerate(cases):
    if _DEADLINE.value and time.monotonic() - start > _DEADLINE.value:
      report['rows'].append({**c, 'skipped': f'past --deadline_s={_DEADLINE.value:.0f}'})
      continue
    if cold[i] and 'error' in cold[i]:
      report['rows'].append(row(c, cold[i], None, _PEAK.value))
      continue
    result = vs_pytorch.measure(child_spec(c, cache), _TIMEOUT.value)
    report['rows'].append(row(c, result, cold.get(i), _PEAK.value))
    r = report['rows'][-1]
    print(f'  [{time.monotonic() - start:6.0f} s] ' + format_rows([r]).splitlines()[1],
          flush=True)
    add_ratios(report['rows'])
    save()
  add_ratios(report['rows'])
  report['finished'] = datetime.datetime.now().isoformat(timespec='seconds')
  save()
  print(format_rows(report['rows']))
  if _OUT.value:
    print(f'wrote {_OUT.value}')
  return 1 if any('error' in r for r in report['rows']) else 0


if __name__ == '__main__':
  flags.mark_flag_as_required('reference')
  app.run(main)
