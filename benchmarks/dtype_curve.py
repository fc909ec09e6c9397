"""bfloat16 against float32 over a real training run: the same config, data and seeds, trained once
per compute dtype (`model.dtype`; params stay float32), and the two loss curves side by side.

  python benchmarks/dtype_curve.py                                   # synthetic demo, 300 steps
  python benchmarks/dtype_curve.py --config=configs/synthetic.py --steps=200 --out=curve.json

Each run is a fresh `launch/train.py` process in its own workdir under --workdir (default: a new
temporary folder), one after the other (--parallel runs them at the same time, for a machine with
cores to spare). The script reads each run's train.log: the every-term line per log interval
('step N/M: d/total=... g/total=...') and the sample lines' L1(I'', real) of the EMA generator on
the fixed validation scenes. It prints, per logged step, g/total and d/total of both runs and
the L1 lines, and at the end the mean |bf16 - f32| / |f32| of g/total and d/total over the last
half of the logged steps, with the seconds each run took.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when run as a script, so that importing this module for
  parse_log / relative_gap defines none)."""
  flags.DEFINE_string('config', 'configs/synthetic.py', 'Config file[:args].')
  flags.DEFINE_integer('steps', 300, 'Training steps per run.')
  flags.DEFINE_integer('log_every', 25, 'Steps between logged loss lines.')
  flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes, first = baseline.')
  flags.DEFINE_string('workdir', None, 'Parent of the runs\' workdirs (default: new).')
  flags.DEFINE_bool('parallel', False, 'Run the trainings at the same time.')
  flags.DEFINE_list('override', [], 'More --config.x=y overrides for every run.')
  flags.DEFINE_string('out', None, 'Write the curves as JSON here.')


_STEP_LINE = re.compile(r'step (\d+)/\d+: (.*)$')
_L1_LINE = re.compile(r"step (\d+): samples written .*L1\(I'', real\) EMA ([0-9.]+), raw ([0-9.]+)")


def parse_log(text: str) -> dict[str, Any]:
  """{'losses': {step: {term: value}}, 'l1': {step: (ema, raw)}} from a train.log's text."""
  losses: dict[int, dict[str, float]] = {}
  l1: dict[int, tuple[float, float]] = {}
  for line in text.splitlines():
    m = _L1_LINE.search(line)
    if m:
      l1[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
      continue
    m = _STEP_LINE.search(line)
    if m:
      terms = dict(t.split('=', 1) for t in m.group(2).split() if '=' in t)
      try:
        losses[int(m.group(1))] = {k: float(v) for k, v in terms.items()}
      except ValueError:
        continue
  return {'losses': losses, 'l1': l1}


def relative_gap(base: dict[int, dict[str, float]], other: dict[int, dict[str, float]],
                 term: str) -> float | None:
  """Mean |other - base| / |base| of `term` over the last half of the steps both logged."""
  steps = sorted(s for s in base if s in other and term in base[s] and term in other[s])
  steps = steps[len(steps) // 2:]
  if not steps:
    return None
  return sum(abs(other[s][term] - base[s][term]) / max(abs(base[s][term]), 1e-8)
             for s in steps) / len(steps)


def _command(dtype: str, workdir: str) -> list[str]:
  config = FLAGS.config
  path, _, args = config.partition(':')
  config = os.path.join(REPO, path) + (f':{args}' if args else '')
  return [sys.executable, os.path.join(REPO, 'launch', 'train.py'), f'--config={config}',
          f'--workdir={workdir}', f'--config.model.dtype={dtype}',
          f'--config.train.num_steps={FLAGS.steps}',
          f'--config.train.log_every={FLAGS.log_every}',
          *[f'--config.{o}' for o in FLAGS.override]]


def main(argv):
  del argv
  parent = FLAGS.workdir or tempfile.mkdtemp(prefix='ecgan_dtype_curve_')
  os.makedirs(parent, exist_ok=True)
  runs: dict[str, dict[str, Any]] = {}
  procs = {}
  for dtype in FLAGS.dtypes:
    workdir = os.path.join(parent, dtype)
    runs[dtype] = {'workdir': workdir, 'command': _command(dtype, workdir)}
    log = open(os.path.join(parent, f'{dtype}.out'), 'w')  # pylint: disable=consider-using-with
    runs[dtype]['start'] = time.monotonic()
    print(f'dtype_curve: training {dtype} in {workdir}', flush=True)
    # Two JAX processes on one GPU: neither may take 75% of its memory up front.
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false') if FLAGS.parallel else None
    procs[dtype] = subprocess.Popen(runs[dtype]['command'], cwd=REPO, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
    if not FLAGS.parallel:
      procs[dtype].wait()
      runs[dtype]['seconds'] = time.monotonic() - runs[dtype]['start']
  for dtype, proc in procs.items():
    proc.wait()
    runs[dtype].setdefault('seconds', time.monotonic() - runs[dtype]['start'])
    runs[dtype]['returncode'] = proc.returncode
    log_path = os.path.join(runs[dtype]['workdir'], 'train.log')
    text = open(log_path).read() if os.path.exists(log_path) else ''
    runs[dtype].update(parse_log(text))
    if proc.returncode:
      tail = open(os.path.join(parent, f'{dtype}.out')).read().splitlines()[-15:]
      print(f'dtype_curve: the {dtype} run failed (exit {proc.returncode}):\n  '
            + '\n  '.join(tail), flush=True)
  base, others = FLAGS.dtypes[0], FLAGS.dtypes[1:]
  steps = sorted(set().union(*(r['losses'] for r in runs.values())))
  short = {'float32': 'f32', 'bfloat16': 'bf16', 'float16': 'f16'}
  header = f'{"step":>6s}' + ''.join(f' {short.get(d, d) + " " + t:>14s}'
                                     for t in ('g/total', 'd/total') for d in FLAGS.dtypes)
  print(header)
  for s in steps:
    cells = []
    for term in ('g/total', 'd/total'):
      for d in FLAGS.dtypes:
        v = runs[d]['losses'].get(s, {}).get(term)
        cells.append(f' {v:14.4f}' if v is not None else f' {"-":>14s}')
    print(f'{s:6d}' + ''.join(cells))
  for s in sorted(set().union(*(r['l1'] for r in runs.values()))):
    print(f'L1(I\'\', real) EMA at step {s}: ' + ', '.join(
        f'{d} {runs[d]["l1"][s][0]:.4f}' for d in FLAGS.dtypes if s in runs[d]['l1']))
  summary = {}
  for d in others:
    summary[d] = {t: relative_gap(runs[base]['losses'], runs[d]['losses'], t)
                  for t in ('g/total', 'd/total')}
    gaps = ', '.join(f'{t} {"-" if v is None else f"{100 * v:.1f}%"}'
                     for t, v in summary[d].items())
    print(f'{d} vs {base}, mean relative gap over the last half: {gaps}')
  print('seconds per run: ' + ', '.join(f'{d} {r["seconds"]:.0f}' for d, r in runs.items())
        + (' (run at the same time)' if FLAGS.parallel else ''))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': FLAGS.config, 'steps': FLAGS.steps, 'summary': summary,
                 'runs': {d: {**r, 'losses': {str(k): v for k, v in r['losses'].items()},
                              'l1': {str(k): v for k, v in r['l1'].items()}}
                          for d, r in runs.items()}}, f, indent=1)
    print(f'wrote {FLAGS.out}')
  return 1 if any(r['returncode'] for r in runs.values()) else 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
