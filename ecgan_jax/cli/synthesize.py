"""Label maps -> images with a trained checkpoint (`ecgan-synthesize`, launch/synthesize.py).

  python launch/synthesize.py --workdir=runs/synthetic --labels=my_labels/ --out=out/
  python launch/synthesize.py --workdir=runs/ade20k --config=configs/ade20k.py \
      --config.dataset.root=/data/ADEChallengeData2016 --split=val --out=out/ --samples=3

Writes OUT/<output>/<stem>.png for each requested output (final = I'', coarse = I', edge = I'_e,
class = I_g), OUT/label/<stem>.png (colourised input) and OUT/index.html. With --samples=N > 1 the
stems get a _s<k> suffix. Batches are sharded over all local devices.
"""
from __future__ import annotations

import html
import os
import sys
from typing import Iterator

import numpy as np
from absl import app, flags
from ml_collections import config_flags

# Own flag registry, so that several CLIs (and their tests) live in one process.
FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Optional config file (default: the config saved in the checkpoint); needed '
    'for --split with a dataset root.', lock_config=True, flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run folder (with checkpoints/).',
                               flag_values=FLAGS)
_LABELS = flags.DEFINE_string('labels', None, 'Folder of label-map PNGs (class ids, model size).',
                              flag_values=FLAGS)
_INSTANCES = flags.DEFINE_string('instances', None, "Optional folder of instance-id PNGs with the "
                                 "label maps' stems.", flag_values=FLAGS)
_SPLIT = flags.DEFINE_string('split', None, "Dataset split to synthesise instead ('val').",
                             flag_values=FLAGS)
_OUT = flags.DEFINE_string('out', None, 'Output folder.', flag_values=FLAGS)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).', flag_values=FLAGS)
_RAW = flags.DEFINE_bool('raw', False, 'Use the raw generator instead of its EMA.',
                         flag_values=FLAGS)
_SAMPLES = flags.DEFINE_integer('samples', 1, 'Random styles per label map (multi-modal models).',
                                flag_values=FLAGS)
_STYLE = flags.DEFINE_string('style', None, 'Style reference image (multimodal=vae models).',
                             flag_values=FLAGS)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random styles.', flag_values=FLAGS)
_OUTPUTS = flags.DEFINE_list('outputs', ['final'], 'Any of final, coarse, edge, class.',
                             flag_values=FLAGS)
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Label maps per generator call.', flag_values=FLAGS)
_NUM = flags.DEFINE_integer('num_examples', None, 'With --split: only the first N examples.',
                            flag_values=FLAGS)


def folder_examples(synth, labels_dir: str, instances_dir: str | None) -> Iterator[dict]:
  """Yields {'key', 'label' int32 [H, W], 'instance'?} for each label PNG in `labels_dir`."""
  from ecgan_jax.data import sources  # pylint: disable=import-outside-toplevel
  files = sources.list_files(labels_dir, sources.LABEL_EXTS, 'label maps')
  inst = (sources.list_files(instances_dir, sources.LABEL_EXTS, 'instance maps')
          if instances_dir else {})
  for key in sorted(files):
    ex = {'key': key, 'label': synth.check_labels(sources.read_id_map(files[key]), files[key])[0]}
    if instances_dir:
      if key not in inst:
        raise FileNotFoundError(f'no instance map for {files[key]} in {instances_dir}')
      ex['instance'] = sources.read_id_map(inst[key], 'instance map')
    yield ex


def split_examples(synth, config, split: str, num_examples: int | None) -> Iterator[dict]:
  """Yields the examples of a dataset split through the evaluation pipeline (keys val_00000...)."""
  from ecgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  if split != 'val':
    raise app.UsageError(f"--split={split}: only 'val' is supported")
  it = pipeline.make_eval_iterator(config, 1, process_index=0, process_count=1,
                                   num_examples=num_examples, batch_size=1)
  i = 0
  for batch in it:
    batch = {k: np.asarray(v)[0, 0] for k, v in batch.items()}  # [device, batch] -> one example
    if not batch.get('valid', True):
      continue
    ex = {'key': f'{split}_{i:05d}', 'label': synth.check_labels(batch['label'])[0]}
    if 'instance' in batch:
      ex['instance'] = batch['instance']
    i += 1
    yield ex


def read_style(synth, path: str) -> np.ndarray:
  """Style image file -> uint8 [H, W, 3] at the model's size (bicubic resize)."""
  from ecgan_jax.data import sources, transforms  # pylint: disable=import-outside-toplevel
  image = sources.read_image(path)
  return transforms.resize_bicubic(image, synth.image_size)


def write_index(out: str, rows: list[tuple[str, list[str]]], columns: list[str]) -> str:
  """OUT/index.html: one row per output image, one column per kind (relative PNG links)."""
  head = ''.join(f'<th>{html.escape(c)}</th>' for c in ['name'] + columns)
  body = []
  for name, paths in rows:
    cells = ''.join(f'<td><img src="{html.escape(p)}"></td>' for p in paths)
    body.append(f'<tr><td>{html.escape(name)}</td>{cells}</tr>')
  path = os.path.join(out, 'index.html')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('<!doctype html><meta charset="utf-8"><title>ecgan-jax synthesis</title>'
            '<style>img{width:160px;image-rendering:pixelated}td,th{padding:2px}</style>'
            f'<table><tr>{head}</tr>{"".join(body)}</table>\n')
  return path


def synthesize(synth, examples: Iterator[dict], out: str, *, outputs: list[str], samples: int = 1,
               seed: int = 0, style: np.ndarray | None = None, batch_size: int = 8,
               total: int | None = None) -> list[str]:
  """Generates `samples` images per example in batches and writes the PNGs and index.html;
  returns the written image paths (outputs only)."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel

  from ecgan_jax import inference  # pylint: disable=import-outside-toplevel
  from ecgan_jax.evaluation import samples as samples_lib  # pylint: disable=import-outside-toplevel
  for o in outputs:
    if o not in inference.OUTPUTS:
      raise app.UsageError(f'--outputs: {o!r} is not one of {list(inference.OUTPUTS)}')
    if o not in synth.outputs:
      raise app.UsageError(f'--outputs: this model has no {o!r} output '
                           f'(it has {list(synth.outputs)})')
  if samples < 1:
    raise app.UsageError(f'--samples={samples} must be >= 1')
  if style is not None and samples > 1:
    raise app.UsageError('--style fixes the style: use --samples=1 with it')
  written, rows, pending, position = [], [], [], 0
  bar = tqdm(total=None if total is None else total * samples, unit='img', desc='synthesize')

  def flush():
    nonlocal position
    label = np.stack([p[0]['label'] for p in pending])
    inst = (np.stack([p[0]['instance'] for p in pending]) if 'instance' in pending[0][0] else None)
    result = synth(label, instance=inst, seed=seed, style=style,
                   indices=[p[2] for p in pending])
    for j, (ex, name, _) in enumerate(pending):
      label_path = os.path.join('label', ex['key'] + '.png')
      if not os.path.exists(os.path.join(out, label_path)):
        samples_lib.save_png(os.path.join(out, label_path), synth.colorize(ex['label']))
      paths = [label_path]
      for o in outputs:
        rel = os.path.join(o, name + '.png')
        samples_lib.save_png(os.path.join(out, rel),
                               samples_lib.to_uint8(result[inference.OUTPUTS[o]][j]))
        written.append(os.path.join(out, rel))
        paths.append(rel)
      rows.append((name, paths))
    bar.update(len(pending))
    pending.clear()

  for ex in examples:
    for k in range(samples):
      name = ex['key'] if samples == 1 else f'{ex["key"]}_s{k}'
      pending.append((ex, name, position))  # position numbers the (map, sample): its z index
      position += 1
      if len(pending) == batch_size:
        flush()
  if pending:
    flush()
  bar.close()
  write_index(out, rows, ['label'] + outputs)
  return written


def main(argv: list[str] | None = None) -> None:
  """Console entry point: argv as sys.argv (program name first); user errors exit with one line."""
  from ecgan_jax.data import transforms  # pylint: disable=import-outside-toplevel
  FLAGS.unparse_flags()
  try:
    argv = FLAGS(list(sys.argv if argv is None else argv))
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not _WORKDIR.value or not _OUT.value:
      raise app.UsageError('--workdir and --out are required')
    if bool(_LABELS.value) == bool(_SPLIT.value):
      raise app.UsageError('give exactly one of --labels=DIR or --split=val')
    import ecgan_jax  # pylint: disable=import-outside-toplevel
    from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
    _runtime.use_default_xla_flags()  # before JAX creates its backend
    _runtime.enable_compilation_cache()  # a second run loads the compiled generator
    synth = ecgan_jax.load(_WORKDIR.value, _STEP.value, use_ema=not _RAW.value,
                           config=_CONFIG.value)
    if _LABELS.value:
      from ecgan_jax.data import sources  # pylint: disable=import-outside-toplevel
      total = len(sources.list_files(_LABELS.value, sources.LABEL_EXTS, 'label maps'))
      examples = folder_examples(synth, _LABELS.value, _INSTANCES.value)
    else:
      total = _NUM.value
      examples = split_examples(synth, synth.config, _SPLIT.value, _NUM.value)
    style = read_style(synth, _STYLE.value) if _STYLE.value else None
    written = synthesize(synth, examples, _OUT.value, outputs=_OUTPUTS.value,
                         samples=_SAMPLES.value, seed=_SEED.value, style=style,
                         batch_size=_BATCH.value, total=total)
  except (flags.Error, app.UsageError, FileNotFoundError, ValueError,
          transforms.BadExampleError) as e:
    sys.exit(f'error: {e}')
  print(f'Wrote {len(written)} images and {os.path.join(_OUT.value, "index.html")}')


if __name__ == '__main__':
  main()
