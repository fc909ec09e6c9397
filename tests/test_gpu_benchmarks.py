"""benchmarks/gpu_table.py and benchmarks/dtype_curve.py: their arithmetic and parsing on made-up
child results and logs, and gpu_table end to end (reference cases only, on the CPU) against the
FAKE released-ECGAN checkout of test_vs_pytorch_benchmark.py. No timing is asserted."""
import json
import os
import subprocess
import sys

import pytest

from tests.test_vs_pytorch_benchmark import MICRO, _write_fake_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import dtype_curve  # noqa: E402  (benchmarks/dtype_curve.py)
import gpu_table  # noqa: E402  (benchmarks/gpu_table.py; defines vs_pytorch's flags too)

TABLE = os.path.join(REPO, 'benchmarks', 'gpu_table.py')


def test_gpu_table_cases_parse_and_malformed_ones_are_rejected_by_name():
  assert gpu_table.parse_case('cityscapes:B8:bfloat16:16') == {
      'dataset': 'cityscapes', 'side': 'B8', 'dtype': 'bfloat16', 'batch': 16}
  for bad, why in (('ade20k:B8:float32', 'DATASET:SIDE:DTYPE:BATCH'),
                   ('coco:B8:float32:1', 'dataset must be'),
                   ('ade20k:B9:float32:1', 'side must be'),
                   ('ade20k:ref:bfloat16:1', 'the reference: float32'),
                   ('ade20k:B8:float16:1', 'dtype must be'),
                   ('ade20k:B8:float32:0', 'positive integer')):
    with pytest.raises(ValueError, match=why):
      gpu_table.parse_case(bad)


def test_gpu_table_rows_give_images_per_second_mfu_and_speedup_at_the_same_batch():
  ref = gpu_table.row({'dataset': 'ade20k', 'side': 'ref', 'dtype': 'float32', 'batch': 4},
                      {'iter_s': [0.5, 0.4, 0.6], 'peak_device_mib': 2048.0}, None, 1000.0)
  ours = gpu_table.row({'dataset': 'ade20k', 'side': 'B8', 'dtype': 'float32', 'batch': 4},
                       {'iter_s': [0.2, 0.2, 0.3], 'flops': 2e12, 'peak_device_mib': 1024.0,
                        'compile_s': 3.0, 'xla_memory_mib': 512.0},
                       {'compile_s': 60.0, 'xla_memory_mib': 512.0}, 1000.0)
  other_batch = gpu_table.row({'dataset': 'ade20k', 'side': 'B8', 'dtype': 'float32',
                               'batch': 1}, {'iter_s': [0.1], 'flops': 1e12}, None, 1000.0)
  failed = gpu_table.row({'dataset': 'ade20k', 'side': 'B4', 'dtype': 'float32', 'batch': 4},
                         {'side': 'B4', 'error': 'exit 1', 'stderr_tail': ['oom']}, None, 1000.0)
  rows = [ref, ours, other_batch, failed]
  gpu_table.add_ratios(rows)
  assert ref['img_per_s'] == pytest.approx(4 / 0.5) and ref['peak_device_gib'] == 2.0
  assert ours['img_per_s'] == pytest.approx(4 / 0.2)
  assert ours['tflops_per_s'] == pytest.approx(2e12 / 0.2 / 1e12)
  assert ours['mfu'] == pytest.approx(10.0 / 1000.0)
  assert ours['speedup_vs_ref'] == pytest.approx(20.0 / 8.0)
  assert ours['compile_cold_s'] == 60.0 and ours['compile_cached_s'] == 3.0
  assert ours['xla_memory_gib'] == 0.5
  assert 'speedup_vs_ref' not in other_batch  # no reference at batch 1
  assert failed['error'] == 'exit 1' and failed['stderr_tail'] == ['oom']
  table = gpu_table.format_rows(rows + [{'dataset': 'cityscapes', 'side': 'B8',
                                         'dtype': 'float32', 'batch': 1, 'skipped': 'late'}])
  lines = table.splitlines()
  assert len(lines) == 6 and '2.50' in lines[2] and '1.0%' in lines[2]
  assert 'FAILED: exit 1' in lines[4] and 'SKIPPED: late' in lines[5]


def _run_table(args, timeout=300):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, TABLE] + args, capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=REPO, check=False)


def test_gpu_table_measures_reference_cases_and_skips_those_past_the_deadline(tmp_path):
  ref = _write_fake_reference(tmp_path / 'ECGAN')
  out = tmp_path / 'table.json'
  micro = [a for a in MICRO if a.split('=')[0] in ('--size', '--ngf', '--iters', '--warmup')]
  proc = _run_table([f'--reference={ref}', '--platform=cpu', '--deadline_s=1',
                     '--cases=ade20k:ref:float32:2,ade20k:ref:float32:1', f'--out={out}',
                     f'--cache_dir={tmp_path / "cache"}'] + micro)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [r.get('skipped', 'ran')[:5] for r in rows] == ['ran', 'past ']  # the child took > 1 s
  assert rows[0]['batch'] == 2 and rows[0]['img_per_s'] == pytest.approx(
      2 / rows[0]['iter_median_s'])
  assert 'SKIPPED: past --deadline_s=1' in proc.stdout


def test_gpu_table_rejects_vs_pytorch_only_flags_and_unknown_cases(tmp_path):
  ref = _write_fake_reference(tmp_path / 'ECGAN')
  proc = _run_table([f'--reference={ref}', '--preset=small'], timeout=60)
  assert proc.returncode != 0 and '--preset is a vs_pytorch.py flag' in proc.stderr
  proc = _run_table([f'--reference={ref}', '--cases=ade20k:B8:float32'], timeout=60)
  assert proc.returncode != 0 and 'is not DATASET:SIDE:DTYPE:BATCH' in proc.stderr
  proc = _run_table([f'--reference={ref}', '--phases=time'], timeout=60)
  assert proc.returncode != 0 and 'needs the --cache_dir' in proc.stderr


TRAIN_LOG = '''\
I 10:00:00 step 0: samples written to /w/samples; L1(I'', real) EMA 0.5030, raw 0.5030
I 10:00:05 step 25/100: d/total=2.000 g/total=10.00 g/vgg=1.5
I 10:00:09 step 50/100: d/total=1.800 g/total=9.000
I 10:00:10 step 50: checkpoint saving to /w/checkpoints/50
I 10:00:14 step 75/100: d/total=1.600 g/total=8.000
I 10:00:19 step 100/100: d/total=1.500 g/total=7.000
I 10:00:20 step 100: samples written to /w/samples; L1(I'', real) EMA 0.3000, raw 0.3100
'''


def test_dtype_curve_reads_the_loss_and_l1_lines_of_a_train_log():
  parsed = dtype_curve.parse_log(TRAIN_LOG)
  assert sorted(parsed['losses']) == [25, 50, 75, 100]
  assert parsed['losses'][25] == {'d/total': 2.0, 'g/total': 10.0, 'g/vgg': 1.5}
  assert parsed['l1'] == {0: (0.503, 0.503), 100: (0.3, 0.31)}


def test_dtype_curve_gap_is_the_mean_relative_difference_over_the_last_half():
  base = dtype_curve.parse_log(TRAIN_LOG)['losses']
  other = {s: {k: v * (1.1 if s >= 75 else 2.0) for k, v in terms.items()}
           for s, terms in base.items()}
  assert dtype_curve.relative_gap(base, other, 'g/total') == pytest.approx(0.1)
  assert dtype_curve.relative_gap(base, {}, 'g/total') is None
