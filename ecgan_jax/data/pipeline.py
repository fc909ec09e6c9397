"""grain input pipelines: host batches split over local devices, checkpointable, multi-host.

Training (`make_train_iterator`): source indices sharded by JAX process (disjoint, covering),
shuffled with `config.dataset.shuffle_seed` (reshuffled each epoch), repeated forever, decoded and
prepared (resize + Canny), randomly cropped and flipped jointly (grain random map, seeded), batched
to the host batch and reshaped to [local devices, per-device batch, ...]; optional worker processes.
The iterator's state saves and restores with Orbax through grain's checkpoint handler
(`grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`), resuming on the exact next batch.

Batches (numpy), host batch b = config.train.batch_size / process_count over D local devices:
  'label' int32 [D, b/D, H, W], 'image' float32 [D, b/D, H, W, 3] in [-1, 1],
  'edge' float32 [D, b/D, H, W, 1] in {-1, +1}, 'instance' float32 [D, b/D, H, W, 1] in {0, 1}
  (only if config.dataset.no_instance is False); eval batches add 'valid' bool [D, b/D].
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any

import grain
import numpy as np

from ecgan_jax.data import edges as edges_lib
from ecgan_jax.data import prepared as prepared_lib
from ecgan_jax.data import sources as sources_lib
from ecgan_jax.data import transforms

log = logging.getLogger(__name__)
READ_THREADS = 2  # threads decoding examples ahead (per process)
BATCHES_AHEAD = 2  # batches assembled ahead by a background thread (0 workers)


def _process_index_and_count(process_index: int | None,
                             process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, process_count={process_count})')
  return int(process_index), int(process_count)


def _host_batch(batch_size: int, process_count: int, num_local_devices: int) -> int:
  if batch_size % process_count:
    raise ValueError(f'batch size {batch_size} is not divisible by {process_count} processes')
  host = batch_size // process_count
  if num_local_devices < 1 or host % num_local_devices:
    raise ValueError(f'host batch {host} (batch size {batch_size} / {process_count} processes) is '
                     f'not divisible by {num_local_devices} local devices')
  return host


def _absl_flags_parsed() -> None:
  """grain worker processes read absl flags; mark them parsed when used as a library."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class LoadExample:
  """Map from a source index to a prepared example (or None: a skipped bad example).

  With on_bad='skip' a BadExampleError is logged and counted (`num_skipped`); if every index of
  the shard turns out bad the pipeline stops with an error instead of spinning forever.
  """

  def __init__(self, source: Any, prepare: transforms.Prepare | None, on_bad: str,
               shard_size: int, bad_examples_file: str | None = None):
    self.source, self.prepare, self.on_bad, self.shard_size = source, prepare, on_bad, shard_size
    self.bad_examples_file = bad_examples_file
    self.num_skipped = 0
    self._bad: set[int] = set()

  def __repr__(self) -> str:
    return f'LoadExample({self.source!r}, {self.prepare!r}, on_bad={self.on_bad!r})'

  def _skip(self, index: int, reason: Any) -> None:
    """Counts every skip; logs (and appends to bad_examples_file) each bad index once."""
    self.num_skipped += 1
    if index not in self._bad:
      self._bad.add(index)
      log.warning('Skipped bad example %d: %s', index, reason)
      if self.bad_examples_file:
        write_bad_examples(self.bad_examples_file, [str(reason)], append=True)
    if len(self._bad) >= self.shard_size:
      raise RuntimeError(f'every example of this shard ({self.shard_size}) is bad; last: {reason}')

  def __call__(self, index: int) -> dict | None:
    index = int(index)
    try:
      ex = self.source[index]
      if ex is None:  # a bad example marked in prepared data
        if self.on_bad != 'skip':
          raise transforms.BadExampleError(
              f'example {index} of {self.source!r} was marked bad when prepared')
        self._skip(index, 'marked bad when prepared')
        return None
      return self.prepare(ex) if self.prepare is not None else ex
    except transforms.BadExampleError as e:
      if self.on_bad != 'skip':
        raise transforms.BadExampleError(f'{e}. {sources_lib.SKIP_HINT}') from None
      self._skip(index, e)
      return None


def write_bad_examples(path: str, lines: list[str], append: bool = False) -> None:
  """Writes (or appends) one 'file: what is wrong' line per bad example to `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'a' if append else 'w') as f:
    f.writelines(line.replace('\n', ' ') + '\n' for line in lines)


def checked_source(source: Any, config: Any, split: str,
                   bad_examples_file: str | None = None) -> Any:
  """Runs the start-up check of a file source (`PairedFileSource.check`: seconds, nothing is
  compiled yet). With on_bad_example='error' the first defect raises BadExampleError naming the
  file; with 'skip' each bad example is logged once and left out. Either way the defects (and the
  files left out unmatched) are written to `bad_examples_file`."""
  if not isinstance(source, sources_lib.PairedFileSource):
    return source
  d = config.dataset
  bad = source.check(d.get('check_labels', 'sample'), int(d.get('check_labels_sample', 200)))
  lines = source.left_out + [message for _, message in bad]
  if bad_examples_file and lines:
    write_bad_examples(bad_examples_file, lines)
  if not bad:
    return source
  if d.on_bad_example != 'skip':
    listed = f'; all {len(bad)} are listed in {bad_examples_file}' if bad_examples_file else ''
    raise transforms.BadExampleError(
        f'{bad[0][1]}. Found by the start-up check of the {split} split '
        f'({len(bad)} bad example(s){listed}). {sources_lib.SKIP_HINT}')
  if len(bad) == len(source):
    raise transforms.BadExampleError(
        f'every example of the {split} split ({len(source)}) is bad; first: {bad[0][1]}')
  for _, message in bad:
    log.warning('Leaving out bad example: %s', message)
  log.warning('%s split: left out %d bad example(s) of %d%s', split, len(bad), len(source),
              f' (listed in {bad_examples_file})' if bad_examples_file else '')
  return source.without(i for i, _ in bad)


def _source_and_prepare(config: Any, split: str, geom: transforms.Geometry,
                        bad_examples_file: str | None = None):
  """The split's source (raw and start-up checked, or prepared) and the deterministic stage to run
  on it (None when the source is prepared)."""
  d = config.dataset
  use_instance = not d.no_instance
  size = geom.load or geom.crop
  if d.prepared_dir:
    source = prepared_lib.PreparedSource(os.path.expanduser(d.prepared_dir), split)
    prepared_lib.check_metadata(source.metadata,
                                prepared_lib.describe_preparation(config, size, use_instance),
                                d.prepared_dir, split)
    return source, None
  source = checked_source(sources_lib.make_source(config, split, *size), config, split,
                          bad_examples_file)
  cache = None
  if d.edge_cache_dir:
    cache_dir = os.path.expanduser(d.edge_cache_dir)
    if not os.path.isabs(cache_dir) and d.root:
      cache_dir = os.path.join(os.path.expanduser(d.root), cache_dir)
    cache = edges_lib.EdgeCache(os.path.join(cache_dir, split))
  return source, transforms.Prepare(geom, use_instance, cache)


def _read_options(host_batch: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=max(8, 2 * host_batch))


def _to_process_memory(batch: dict) -> dict:
  """Copies worker batches out of shared memory, so none outlives its iterator."""
  return {k: np.array(v) for k, v in batch.items()}


def _prefetch(ds: grain.IterDataset, num_workers: int) -> grain.IterDataset:
  """Batches are made ahead in `num_workers` processes, or else in a background thread."""
  if num_workers > 0:
    _absl_flags_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(num_workers)))
    return ds.map(_to_process_memory)
  return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=BATCHES_AHEAD)


def build_train_dataset(config: Any, num_local_devices: int, process_index: int | None = None,
                        process_count: int | None = None,
                        bad_examples_file: str | None = None) -> grain.IterDataset:
  """The training pipeline as a grain IterDataset of device-split host batches (infinite).
  Bad examples found at start-up or while reading are listed in `bad_examples_file` (if given)."""
  d = config.dataset
  pi, pc = _process_index_and_count(process_index, process_count)
  host_batch = _host_batch(int(config.train.batch_size), pc, num_local_devices)
  geom = transforms.geometry(config, train=True)
  source, prepare = _source_and_prepare(config, 'train', geom, bad_examples_file)
  indices = grain.MapDataset.range(len(source))[pi::pc]
  if len(indices) == 0:
    raise ValueError(f'process {pi} of {pc} gets no examples: the train split has {len(source)}')
  seed = int(d.shuffle_seed)
  ds = indices.shuffle(seed=seed).repeat()
  ds = ds.map(LoadExample(source, prepare, d.on_bad_example, len(indices), bad_examples_file))
  ds = ds.random_map(transforms.RandomCropFlip(geom), seed=(seed * 7919 + 1 + pi) % 2**32)
  ds = ds.map(transforms.Finalize())
  ds = ds.to_iter_dataset(_read_options(host_batch))
  ds = ds.batch(host_batch, drop_remainder=True)
  ds = ds.map(transforms.SplitDevices(num_local_devices))
  return _prefetch(ds, d.num_workers)


def make_train_iterator(config: Any, num_local_devices: int, process_index: int | None = None,
                        process_count: int | None = None,
                        bad_examples_file: str | None = None) -> grain.DatasetIterator:
  """Infinite iterator of training batches (see module docstring); `get_state`/`set_state` and
  grain's Orbax handler resume it on the exact next batch."""
  return iter(build_train_dataset(config, num_local_devices, process_index, process_count,
                                  bad_examples_file))


class EvalLoad:
  """Map from a padded position to an eval example with a 'valid' flag: positions past the shard
  (and bad examples in 'skip' mode) become blank padding with valid=False."""

  def __init__(self, load: LoadExample, shard: list[int], geom: transforms.Geometry,
               use_instance: bool):
    self.load, self.shard, self.geom, self.use_instance = load, shard, geom, use_instance

  def __repr__(self) -> str:
    return f'EvalLoad({self.load!r}, n={len(self.shard)})'

  def _padding(self) -> dict:
    h, w = self.geom.crop
    out = {'key': '', 'image': np.zeros((h, w, 3), np.uint8), 'label': np.zeros((h, w), np.int32),
           'edge': np.zeros((h, w), np.uint8), 'valid': False}
    if self.use_instance:
      out['instance'] = np.zeros((h, w), np.int32)
    return out

  def __call__(self, position: int) -> dict:
    ex = self.load(self.shard[position]) if position < len(self.shard) else None
    if ex is None:
      return self._padding()
    return dict(ex, valid=True)


class _CentreCrop:
  def __init__(self, geom: transforms.Geometry):
    self.crop = transforms.RandomCropFlip(geom)

  def __repr__(self) -> str:
    return f'_CentreCrop({self.crop!r})'

  def __call__(self, ex: dict) -> dict:
    return self.crop(ex, None)


def build_eval_dataset(config: Any, num_local_devices: int, process_index: int | None = None,
                       process_count: int | None = None, num_examples: int | None = None,
                       batch_size: int | None = None, with_keys: bool = False
                       ) -> grain.IterDataset:
  """The evaluation pipeline: the first `num_examples` of the val split (default
  config.dataset.eval_num_examples, else all), no shuffle, no random crop or flip, no repeat; the
  examples are split over processes and every process yields the same number of batches, the
  last padded with blank examples marked 'valid' False. `with_keys`: batches also carry 'key', the
  examples' file stems (numpy strings, '' for padding; keep them off the device)."""
  d = config.dataset
  pi, pc = _process_index_and_count(process_index, process_count)
  host_batch = _host_batch(int(batch_size or config.train.batch_size), pc, num_local_devices)
  geom = transforms.geometry(config, train=False)
  source, prepare = _source_and_prepare(config, 'val', geom)
  n = len(source)
  if num_examples is None:
    num_examples = d.get('eval_num_examples')
  if num_examples is not None:
    if num_examples < 1:
      raise ValueError(f'num_examples={num_examples} must be >= 1')
    n = min(n, int(num_examples))
  shard = list(range(pi, n, pc))
  per_process = math.ceil(n / pc)
  num_batches = math.ceil(per_process / host_batch)
  load = LoadExample(source, prepare, d.on_bad_example, max(1, len(shard)))
  ds = grain.MapDataset.range(num_batches * host_batch)
  ds = ds.map(EvalLoad(load, shard, geom, not d.no_instance))
  ds = ds.map(_CentreCrop(geom)).map(transforms.Finalize(keep_key=with_keys))
  ds = ds.to_iter_dataset(_read_options(host_batch))
  ds = ds.batch(host_batch, drop_remainder=True)
  ds = ds.map(transforms.SplitDevices(num_local_devices))
  return _prefetch(ds, d.num_workers)


def eval_num_batches(config: Any, num_local_devices: int, process_count: int | None = None,
                     num_examples: int | None = None, batch_size: int | None = None) -> int:
  """Batches each process's eval iterator yields (as `build_eval_dataset`; for progress bars)."""
  _, pc = _process_index_and_count(None, process_count)
  host_batch = _host_batch(int(batch_size or config.train.batch_size), pc, num_local_devices)
  source, _ = _source_and_prepare(config, 'val', transforms.geometry(config, train=False))
  n = len(source)
  if num_examples is None:
    num_examples = config.dataset.get('eval_num_examples')
  if num_examples is not None:
    n = min(n, int(num_examples))
  return math.ceil(math.ceil(n / pc) / host_batch)


def make_eval_iterator(config: Any, num_local_devices: int, process_index: int | None = None,
                       process_count: int | None = None, num_examples: int | None = None,
                       batch_size: int | None = None, with_keys: bool = False
                       ) -> grain.DatasetIterator:
  """Deterministic, finite iterator of eval batches (see `build_eval_dataset`)."""
  return iter(build_eval_dataset(config, num_local_devices, process_index, process_count,
                                 num_examples, batch_size, with_keys))


def prepare_dataset(config: Any, directory: str, splits: tuple[str, ...] = ('train', 'val'),
                    num_shards: int = 1, progress: bool = False) -> dict[str, dict]:
  """Writes the named splits of the config's raw dataset to ArrayRecord shards in `directory`
  (edges precomputed, each split at the geometry its pipeline reads); returns their metadata."""
  out = {}
  for split in splits:
    geom = transforms.geometry(config, train=split == 'train')
    raw = config.copy_and_resolve_references()
    raw.dataset.prepared_dir = None
    source, prepare = _source_and_prepare(raw, split, geom)
    size = geom.load or geom.crop
    expected = prepared_lib.describe_preparation(config, size, not config.dataset.no_instance)
    out[split] = prepared_lib.write_prepared(source, prepare, directory, split, expected,
                                             num_shards, config.dataset.on_bad_example, progress)
  return out

