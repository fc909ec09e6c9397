"""Prepared datasets: ArrayRecord shards of preprocessed examples with precomputed edge maps.

`write_prepared` runs the deterministic stage of the pipeline (decode, label mapping, resize to the
load geometry, Canny) over a split and writes each example, in source order, as one record;
`PreparedSource` reads them back as a grain random-access source. The random stage (crop, flip) and
the finalisation run as for raw folders, so reading prepared data yields the same batches as reading
the raw folders. A bad example in 'skip' mode is written as a marker record and skipped again on
reading, so indices (and therefore shuffles) stay aligned. Needs no TensorFlow.

Files: <dir>/<split>.array_record-<i>-of-<n> and <dir>/<split>.json (metadata: geometry, label set,
edge settings, example count), checked against the config when reading.
"""
from __future__ import annotations

import io
import json
import logging
import os
import struct
from typing import Any

import cv2
import numpy as np

from ecgan_jax.data import edges as edges_lib

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def _encode_array(a: np.ndarray) -> tuple[dict, bytes]:
  """Lossless encoding: PNG for uint8 and 16-bit-representable ints, else .npy."""
  a = np.ascontiguousarray(a)
  meta = {'dtype': a.dtype.str, 'shape': list(a.shape)}
  if a.dtype == np.uint8 or (a.dtype.kind in 'iu' and a.ndim == 2 and a.size and a.min() >= 0
                             and a.max() < 65536):
    png = a if a.dtype == np.uint8 else a.astype(np.uint16)
    if png.ndim == 3:
      png = png[..., ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode('.png', png, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if ok:
      return dict(meta, fmt='png'), buf.tobytes()
  bio = io.BytesIO()
  np.save(bio, a, allow_pickle=False)
  return dict(meta, fmt='npy'), bio.getvalue()


def _decode_array(meta: dict, blob: bytes) -> np.ndarray:
  if meta['fmt'] == 'png':
    a = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if a.ndim == 3:
      a = a[..., ::-1]
    a = a.astype(np.dtype(meta['dtype']))
  else:
    a = np.load(io.BytesIO(blob), allow_pickle=False)
  if list(a.shape) != meta['shape']:
    raise ValueError(f'prepared record: decoded shape {a.shape} != stored {meta["shape"]}')
  return np.ascontiguousarray(a)


def encode_example(ex: dict | None, bad_reason: str = '') -> bytes:
  """One record: a 4-byte header length, a JSON header, then the arrays' encodings."""
  header: dict[str, Any] = {'v': FORMAT_VERSION}
  blobs = []
  if ex is None:
    header['bad'] = bad_reason or 'bad example'
  else:
    header['key'] = ex['key']
    header['arrays'] = {}
    for k in ('image', 'label', 'edge', 'instance'):
      if k in ex:
        meta, blob = _encode_array(ex[k])
        header['arrays'][k] = dict(meta, n=len(blob))
        blobs.append(blob)
  head = json.dumps(header).encode()
  return struct.pack('<I', len(head)) + head + b''.join(blobs)


def decode_example(record: bytes) -> dict | None:
  """Inverse of encode_example; None for a bad-example marker."""
  (n,) = struct.unpack('<I', record[:4])
  header = json.loads(record[4:4 + n])
  if 'bad' in header:
    return None
  out: dict[str, Any] = {'key': header['key']}
  pos = 4 + n
  for k, meta in header['arrays'].items():
    out[k] = _decode_array(meta, record[pos:pos + meta['n']])
    pos += meta['n']
  return out


def metadata_path(directory: str, split: str) -> str:
  return os.path.join(directory, f'{split}.json')


def read_metadata(directory: str, split: str) -> dict:
  path = metadata_path(directory, split)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} not found: {directory} holds no prepared {split} split (run launch/prepare_data.py)')
  with open(path) as f:
    return json.load(f)


class PreparedSource:
  """grain random-access source over a prepared split; `source[i]` is the i-th example of the raw
  source after the deterministic stage ({'key', 'image' uint8 [H, W, 3], 'label' int32 [H, W],
  'edge' uint8 [H, W], 'instance' int32 [H, W] if stored}), or None for a skipped bad example."""

  def __init__(self, directory: str, split: str):
    import grain  # pylint: disable=g-import-not-at-top
    self.directory, self.split = directory, split
    self.metadata = read_metadata(directory, split)
    paths = [os.path.join(directory, p) for p in self.metadata['shards']]
    for p in paths:
      if not os.path.exists(p):
        raise FileNotFoundError(f'prepared shard {p} listed in {metadata_path(directory, split)} '
                                'is missing')
    self._records = grain.sources.ArrayRecordDataSource(paths)
    if len(self._records) != self.metadata['num_examples']:
      raise ValueError(f'{directory}: {len(self._records)} records in the {split} shards, but the '
                       f'metadata says {self.metadata["num_examples"]}')

  def __len__(self) -> int:
    return len(self._records)

  def __repr__(self) -> str:
    return f'PreparedSource({self.directory!r}, {self.split!r})'

  def __getitem__(self, index: int) -> dict | None:
    return decode_example(self._records[index])


def describe_preparation(config: Any, load_size: tuple[int, int], use_instance: bool) -> dict:
  """What a prepared split must agree on with the config that reads it."""
  d = config.dataset
  return {'dataset': d.name, 'label_nc': int(d.label_nc),
          'contain_dontcare_label': bool(d.contain_dontcare_label),
          'load_size_hw': list(load_size), 'use_instance': bool(use_instance),
          'canny': [edges_lib.SIGMA, edges_lib.LOW, edges_lib.HIGH],
          'synthetic_size': int(d.synthetic_size) if d.name == 'synthetic' else None}


def check_metadata(metadata: dict, expected: dict, directory: str, split: str) -> None:
  """Raises ValueError naming every field where a prepared split disagrees with the config."""
  diffs = [f'{k}: prepared {metadata.get(k)!r}, config wants {v!r}'
           for k, v in expected.items() if metadata.get(k) != v]
  if diffs:
    raise ValueError(f'prepared {split} split in {directory} does not match the config '
                     '(re-run launch/prepare_data.py):\n  ' + '\n  '.join(diffs))


def write_prepared(source: Any, prepare: Any, directory: str, split: str, expected: dict,
                   num_shards: int = 1, on_bad: str = 'error', progress: bool = False) -> dict:
  """Writes every example of `source` through `prepare` to ArrayRecord shards; returns metadata.

  Args:
    source: a random-access source (`len`, `source[i]`), as from `sources.make_source`.
    prepare: the deterministic stage (`transforms.Prepare`).
    expected: `describe_preparation(...)`, stored so that readers can check their config.
    on_bad: 'error' re-raises a bad example; 'skip' writes a marker record and counts it.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  from ecgan_jax.data.transforms import BadExampleError  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  n = len(source)
  num_shards = max(1, min(int(num_shards), n))
  bounds = np.linspace(0, n, num_shards + 1).astype(int)
  shards, skipped = [], 0
  it = range(n)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    it = tqdm.tqdm(it, desc=f'{split}')
  writer, shard = None, -1
  for i in it:
    if writer is None or i >= bounds[shard + 1]:
      if writer is not None:
        writer.close()
      shard += 1
      name = f'{split}.array_record-{shard:05d}-of-{num_shards:05d}'
      shards.append(name)
      writer = array_record_module.ArrayRecordWriter(os.path.join(directory, name),
                                                     'group_size:1')
    try:
      record = encode_example(prepare(source[i]))
    except BadExampleError as e:
      if on_bad != 'skip':
        writer.close()
        raise
      skipped += 1
      log.warning('Skipping bad example %d (%d so far): %s', i, skipped, e)
      record = encode_example(None, str(e))
    writer.write(record)
  writer.close()
  meta = dict(expected, split=split, num_examples=n, num_skipped=skipped, shards=shards,
              format_version=FORMAT_VERSION)
  with open(metadata_path(directory, split), 'w') as f:
    json.dump(meta, f, indent=2)
  return meta
