"""grain random-access sources for datasets in the layouts they ship in.

Every source pairs files by name (never by sort order), reports unmatched files, and decodes one
example per `source[i]`:
  {'key': str, 'image': uint8 [H, W, 3] RGB, 'label': int32 [H, W] class ids in [0, num_classes)
   with the don't-care id label_nc where the dataset has one, 'instance': int32 [H, W] (optional),
   'stamp': str (image file size and mtime, for the edge cache)}.

Label conventions (as SPADE): ADE20K ids are shifted by -1 and 0 (unlabelled) becomes the don't-care
id 150; COCO-Stuff 255 -> 182; Cityscapes labelIds 0..33 kept, 255 -> 35; CelebAMask-HQ per-part
masks are painted in CelebAMask-HQ's order into ids 1..18 over background 0; plain folders keep ids
in [0, label_nc) and map 255 to label_nc when a don't-care class is configured. Any other id is an
error naming the file and the ids.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable

import numpy as np
from PIL import Image

from ecgan_jax.configuration import LABEL_CHECKS, ConfigError
from ecgan_jax.data.transforms import BadExampleError

log = logging.getLogger(__name__)

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
LABEL_EXTS = ('.png', '.bmp', '.tif', '.tiff')
DONTCARE_RAW = 255
SKIP_HINT = ('Fix or remove the file, or pass --config.dataset.on_bad_example=skip to leave bad '
             'examples out')
# Label modes read_id_map accepts without decoding; colour modes are decoded to check the channels.
_ID_MODES = ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', '1')
_TAIL_MARKERS = {'.png': b'IEND', '.jpg': b'\xff\xd9', '.jpeg': b'\xff\xd9'}
SPLITS = {
    'ade20k': {'train': 'training', 'val': 'validation'},
    'cityscapes': {'train': 'train', 'val': 'val'},
    'coco_stuff': {'train': 'train2017', 'val': 'val2017'},
}
# CelebAMask-HQ part masks in the order its own tools paint them; class id = position + 1.
CELEBA_PARTS = ('skin', 'nose', 'eye_g', 'l_eye', 'r_eye', 'l_brow', 'r_brow', 'l_ear', 'r_ear',
                'mouth', 'u_lip', 'l_lip', 'hair', 'hat', 'ear_r', 'neck_l', 'neck', 'cloth')
CELEBA_NUM_TRAIN = 28_000  # ids 0..27999 train, 28000..29999 validation (as SEAN/SPADE-style splits)


# ------------------------------------------------------------------------------------ decoding
def read_image(path: str) -> np.ndarray:
  """Decodes an image file to uint8 [H, W, 3] RGB; corrupt or truncated files raise
  BadExampleError naming the file."""
  try:
    with Image.open(path) as im:
      im.load()
      return np.asarray(im.convert('RGB'))
  except (OSError, ValueError, SyntaxError) as e:
    raise BadExampleError(f'{path}: corrupt or truncated image ({e})') from None


def read_id_map(path: str, what: str = 'label map') -> np.ndarray:
  """Decodes a single-channel id map (PNG modes L, P (palette indices), I;16, I) to [H, W] ints.

  A colour image with differing channels is an error (a colour-coded label map, not ids); one with
  equal channels is read as grey.
  """
  try:
    with Image.open(path) as im:
      im.load()
      mode = im.mode
      ids = np.asarray(im)
  except (OSError, ValueError, SyntaxError) as e:
    raise BadExampleError(f'{path}: corrupt or truncated {what} ({e})') from None
  if mode in ('RGB', 'RGBA', 'LA'):
    colour = ids[..., :3] if mode != 'LA' else ids[..., :1]
    if mode != 'LA' and not ((colour[..., 0] == colour[..., 1]).all()
                             and (colour[..., 1] == colour[..., 2]).all()):
      raise BadExampleError(
          f'{path}: {what} is an {mode} colour image; expected a single-channel map of class ids '
          '(PNG mode L, P or I). Convert colour-coded labels to ids first')
    ids = colour[..., 0]
  elif mode not in ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', '1'):
    raise BadExampleError(f'{path}: {what} has unsupported image mode {mode!r}')
  if ids.ndim != 2:
    raise BadExampleError(f'{path}: {what} has shape {ids.shape}, expected [H, W]')
  return ids.astype(np.int32) if ids.dtype == bool else ids


def _header(path: str, what: str) -> tuple[tuple[int, int], str]:
  """((height, width), PIL mode) from the file's header; BadExampleError naming the file if the
  header does not open or a PNG/JPEG file lacks its end marker (truncated)."""
  try:
    with Image.open(path) as im:
      size, mode = (im.height, im.width), im.mode
    marker = _TAIL_MARKERS.get(os.path.splitext(path)[1].lower())
    if marker is not None:
      with open(path, 'rb') as f:
        f.seek(max(0, os.path.getsize(path) - 64))
        if marker not in f.read():
          raise BadExampleError(f'{path}: truncated {what} (the file ends before its end marker)')
  except BadExampleError:
    raise
  except (OSError, ValueError, SyntaxError) as e:
    raise BadExampleError(f'{path}: corrupt or truncated {what} ({e})') from None
  return size, mode


class LabelMapping:
  """Maps raw label-file ids to class ids and rejects ids outside the dataset's label set.

  scheme: 'direct' (ids [0, label_nc) kept) or 'shift' (ADE20K: raw 1..label_nc -> 0..label_nc-1,
  raw 0 -> don't care). Raw 255 -> don't care (id label_nc) when `dontcare`.
  """

  def __init__(self, label_nc: int, dontcare: bool, scheme: str = 'direct'):
    if scheme not in ('direct', 'shift'):
      raise ValueError(f'unknown label scheme {scheme!r}')
    if scheme == 'shift' and not dontcare:
      raise ValueError("the 'shift' label scheme needs a don't-care class")
    self.label_nc, self.dontcare, self.scheme = int(label_nc), bool(dontcare), scheme
    raw_max = label_nc if scheme == 'shift' else label_nc - 1
    lut = np.full(max(256, raw_max + 1), -1, np.int32)
    lut[:raw_max + 1] = np.arange(raw_max + 1) - (1 if scheme == 'shift' else 0)
    if scheme == 'shift':
      lut[0] = label_nc
    if dontcare:
      lut[DONTCARE_RAW] = label_nc
    self.lut = lut

  def __repr__(self) -> str:
    return f'LabelMapping({self.label_nc}, dontcare={self.dontcare}, scheme={self.scheme!r})'

  def __call__(self, raw: np.ndarray, path: str) -> np.ndarray:
    """raw int [H, W] -> int32 [H, W] class ids; BadExampleError naming `path` on unknown ids."""
    if raw.size and (raw.min() < 0 or raw.max() >= len(self.lut)):
      bad = np.unique(raw[(raw < 0) | (raw >= len(self.lut))])
    else:
      mapped = self.lut[raw]
      if not (mapped < 0).any():
        return mapped
      bad = np.unique(raw[mapped < 0])
    allowed = (f'1..{self.label_nc} (0 = unlabelled)' if self.scheme == 'shift'
               else f'0..{self.label_nc - 1}')
    if self.dontcare:
      allowed += f' or {DONTCARE_RAW} (don\'t care)'
    raise BadExampleError(
        f'{path}: label map contains ids {bad[:8].tolist()}{" ..." if len(bad) > 8 else ""} '
        f'outside the label set ({allowed}; config.dataset.label_nc={self.label_nc})')


# ------------------------------------------------------------------------------------ scanning
def _require_dir(path: str, what: str) -> None:
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{what} folder {path} does not exist')


def list_files(folder: str, exts: Iterable[str], what: str, suffix: str = '',
               recursive: bool = False) -> dict[str, str]:
  """Maps key -> path for files under `folder` whose names end in `suffix` + one of `exts`.

  The key is the path relative to `folder` without `suffix` and extension. Raises if the folder is
  missing or holds no such file, or if two files share a key (e.g. a.jpg and a.png).
  """
  _require_dir(folder, what)
  exts = tuple(e.lower() for e in exts)
  found: dict[str, str] = {}
  walker = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
  for dirpath, _, names in walker:
    for name in names:
      stem, ext = os.path.splitext(name)
      if ext.lower() not in exts or not stem.endswith(suffix):
        continue
      path = os.path.join(dirpath, name)
      if not os.path.isfile(path):
        continue
      rel = os.path.relpath(os.path.join(dirpath, stem[:len(stem) - len(suffix)]), folder)
      key = rel.replace(os.sep, '/')
      if key in found:
        raise ValueError(f'{what}: {found[key]} and {path} have the same name; keep one of them')
      found[key] = path
  if not found:
    raise FileNotFoundError(
        f'{what} folder {folder} is empty (no files ending in {suffix or ""}'
        f'{"|".join(exts)}{" in its subfolders" if recursive else ""})')
  return found


def pair_by_key(primary: dict[str, str], partners: dict[str, dict[str, str]], on_bad: str,
                optional: tuple[str, ...] = ()) -> list[dict[str, str]]:
  """Pairs files by key. `primary` is the image files; `partners` maps a field name ('label',
  'instance', ...) to its files. Unmatched files raise (naming them and the partner expected) or,
  with on_bad='skip', are logged, counted and left out. Returns records sorted by key."""
  problems = []
  for field, files in partners.items():
    for key in sorted(set(primary) - set(files)):
      if field not in optional:
        problems.append(f'{primary[key]}: no {field} file for this image (key {key!r})')
    for key in sorted(set(files) - set(primary)):
      path = files[key] if isinstance(files[key], str) else files[key][0][1]
      problems.append(f'{path}: {field} file has no image partner (key {key!r})')
  if problems and on_bad != 'skip':
    more = f' (and {len(problems) - 1} more unmatched files)' if len(problems) > 1 else ''
    raise BadExampleError(f'{problems[0]}{more}. {SKIP_HINT}')
  for p in problems:
    log.warning('Leaving out %s', p)
  keys = sorted(k for k in primary
                if all(k in files for f, files in partners.items() if f not in optional))
  return Records([dict({'key': k, 'image': primary[k]},
                       **{f: files[k] for f, files in partners.items() if k in files})
                  for k in keys], left_out=problems)


class Records(list):
  """Paired records (a list) that remember the files left out unmatched (`left_out`)."""

  def __init__(self, records: Iterable[dict], left_out: Iterable[str] = ()):
    super().__init__(records)
    self.left_out = list(left_out)


# ------------------------------------------------------------------------------------ sources
class PairedFileSource:
  """grain random-access source of (image, label[, instance]) files paired by name.

  records: dicts {'key', 'image': path, 'label': path, 'instance': path (optional)} or, for
  CelebAMask-HQ, 'parts': tuple of (class id, path) painted in order instead of 'label'.
  """

  def __init__(self, name: str, split: str, root: str, records: list[dict],
               mapping: LabelMapping, use_instance: bool = False, same_size: bool = True):
    if not records:
      raise FileNotFoundError(f'{name} {split} split under {root}: no complete examples found')
    self.name, self.split, self.root = name, split, root
    self.records, self.mapping = records, mapping
    self.use_instance, self.same_size = use_instance, same_size
    self.left_out = list(getattr(records, 'left_out', []))
    self.has_instances = all('instance' in r for r in records)
    if use_instance and not self.has_instances:
      missing = next(r for r in records if 'instance' not in r)
      raise FileNotFoundError(
          f'{name}: config.dataset.no_instance=False but {missing["image"]} has no instance map')

  def __len__(self) -> int:
    return len(self.records)

  def __repr__(self) -> str:  # stable: grain uses it to check restored DataLoader state
    return (f'PairedFileSource({self.name!r}, split={self.split!r}, root={self.root!r}, '
            f'n={len(self.records)}, use_instance={self.use_instance})')

  def describe(self, index: int) -> str:
    return self.records[index]['image']

  def without(self, indices: Iterable[int]) -> 'PairedFileSource':
    """The same source without the records at `indices` (e.g. bad examples in skip mode)."""
    drop = set(int(i) for i in indices)
    return PairedFileSource(
        self.name, self.split, self.root,
        Records([r for i, r in enumerate(self.records) if i not in drop], self.left_out),
        self.mapping, self.use_instance, self.same_size)

  def check(self, labels: str = 'sample', sample: int = 200) -> list[tuple[int, str]]:
    """Start-up check without decoding images: every file's header opens (size, mode), PNG/JPEG
    files end with their end marker (not truncated), label/instance sizes fit the image, label maps
    are single-channel; label maps are decoded and their ids checked on `sample` records spread
    over the split ('sample'), on all ('all') or on none ('none').

    Returns [(record index, 'path: what is wrong')] for the bad records, in index order.
    """
    if labels not in LABEL_CHECKS:
      raise ValueError(f'config.dataset.check_labels={labels!r} is not one of {list(LABEL_CHECKS)}')
    n = len(self.records)
    decode = set()
    if labels == 'all':
      decode = set(range(n))
    elif labels == 'sample' and sample > 0:
      decode = set(np.linspace(0, n - 1, min(n, int(sample))).round().astype(int).tolist())
    bad = []
    for i, rec in enumerate(self.records):
      try:
        self._check_record(rec, i in decode)
      except BadExampleError as e:
        bad.append((i, str(e)))
    return bad

  def _check_record(self, rec: dict, decode_label: bool) -> None:
    image_hw, _ = _header(rec['image'], 'image')
    if 'parts' in rec:
      sizes = {_header(path, 'part mask')[0] for _, path in rec['parts']}
      if len(sizes) > 1:
        raise BadExampleError(f'{rec["parts"][0][1]}: the part masks of {rec["key"]} differ in '
                              f'size ({sorted(sizes)})')
      label_hw, label_path = sizes.pop(), rec['parts'][0][1]
    else:
      label_path = rec['label']
      label_hw, mode = _header(label_path, 'label map')
      if mode not in _ID_MODES:
        read_id_map(label_path)  # colour modes: raises unless the channels are equal
    if self.same_size and label_hw != image_hw:
      raise BadExampleError(
          f'{label_path}: label map is {label_hw[0]}x{label_hw[1]} (HxW) but its image '
          f'{rec["image"]} is {image_hw[0]}x{image_hw[1]}')
    if not self.same_size and label_hw[0] * image_hw[1] != label_hw[1] * image_hw[0]:
      raise BadExampleError(
          f'{label_path}: label map is {label_hw[0]}x{label_hw[1]} (HxW), not the aspect '
          f'ratio of its image {rec["image"]} ({image_hw[0]}x{image_hw[1]})')
    if self.use_instance:
      inst_hw, _ = _header(rec['instance'], 'instance map')
      if inst_hw != label_hw:
        raise BadExampleError(
            f'{rec["instance"]}: instance map is {inst_hw[0]}x{inst_hw[1]} (HxW) but the '
            f'label map {label_path} is {label_hw[0]}x{label_hw[1]}')
    if decode_label:
      self._label(rec)

  def _label(self, rec: dict) -> np.ndarray:
    if 'parts' not in rec:
      return self.mapping(read_id_map(rec['label']), rec['label'])
    label = None
    for class_id, path in rec['parts']:
      part = read_id_map(path, 'part mask')
      if label is None:
        label = np.zeros(part.shape, np.int32)
      elif part.shape != label.shape:
        raise BadExampleError(f'{path}: part mask is {part.shape[0]}x{part.shape[1]} (HxW) but '
                              f'the other masks of {rec["key"]} are {label.shape[0]}x{label.shape[1]}')
      label[part != 0] = class_id
    return label

  def __getitem__(self, index: int) -> dict:
    rec = self.records[index]
    image = read_image(rec['image'])
    label = self._label(rec)
    st = os.stat(rec['image'])
    out = {'key': rec['key'], 'image': image, 'label': label,
           'stamp': f'{st.st_size}:{st.st_mtime_ns}'}  # invalidates cached edges of edited files
    label_path = rec.get('label') or rec['parts'][0][1]
    if self.same_size and label.shape != image.shape[:2]:
      raise BadExampleError(
          f'{label_path}: label map is {label.shape[0]}x{label.shape[1]} (HxW) but its image '
          f'{rec["image"]} is {image.shape[0]}x{image.shape[1]}')
    if not self.same_size and label.shape[0] * image.shape[1] != label.shape[1] * image.shape[0]:
      raise BadExampleError(
          f'{label_path}: label map is {label.shape[0]}x{label.shape[1]} (HxW), not the aspect '
          f'ratio of its image {rec["image"]} ({image.shape[0]}x{image.shape[1]})')
    if self.use_instance:
      inst = read_id_map(rec['instance'], 'instance map').astype(np.int32)
      if inst.shape != label.shape:
        raise BadExampleError(
            f'{rec["instance"]}: instance map is {inst.shape[0]}x{inst.shape[1]} (HxW) but the '
            f'label map {label_path} is {label.shape[0]}x{label.shape[1]}')
      out['instance'] = inst
    return out


def _first_dir(candidates: list[str], what: str) -> str:
  for c in candidates:
    if os.path.isdir(c):
      return c
  raise FileNotFoundError(f'{what} folder not found; looked for: ' + ', '.join(candidates))


def ade20k_source(root: str, split: str, label_nc: int = 150, use_instance: bool = False,
                  on_bad: str = 'error') -> PairedFileSource:
  """ADEChallengeData2016/{images,annotations}/{training,validation}; `root` is that folder or its
  parent."""
  if use_instance:
    raise ValueError('ADE20K has no instance maps: set config.dataset.no_instance=True')
  base = root if os.path.isdir(os.path.join(root, 'images')) else os.path.join(
      root, 'ADEChallengeData2016')
  sub = SPLITS['ade20k'][split]
  images = list_files(os.path.join(base, 'images', sub), IMAGE_EXTS, 'ADE20K image')
  labels = list_files(os.path.join(base, 'annotations', sub), LABEL_EXTS, 'ADE20K annotation')
  records = pair_by_key(images, {'label': labels}, on_bad)
  return PairedFileSource('ade20k', split, root, records,
                          LabelMapping(label_nc, dontcare=True, scheme='shift'))


def cityscapes_source(root: str, split: str, label_nc: int = 35, use_instance: bool = True,
                      on_bad: str = 'error') -> PairedFileSource:
  """leftImg8bit/<split>/<city>/*_leftImg8bit.png with gtFine/<split>/<city>/*_gtFine_labelIds.png
  and *_gtFine_instanceIds.png."""
  sub = SPLITS['cityscapes'][split]
  images = list_files(os.path.join(root, 'leftImg8bit', sub), ('.png',), 'Cityscapes leftImg8bit',
                      suffix='_leftImg8bit', recursive=True)
  gt = os.path.join(root, 'gtFine', sub)
  partners = {'label': list_files(gt, ('.png',), 'Cityscapes gtFine', suffix='_gtFine_labelIds',
                                  recursive=True)}
  if use_instance:
    partners['instance'] = list_files(gt, ('.png',), 'Cityscapes gtFine',
                                      suffix='_gtFine_instanceIds', recursive=True)
  records = pair_by_key(images, partners, on_bad)
  return PairedFileSource('cityscapes', split, root, records, LabelMapping(label_nc, True),
                          use_instance=use_instance)


def coco_stuff_source(root: str, split: str, label_nc: int = 182, use_instance: bool = True,
                      on_bad: str = 'error') -> PairedFileSource:
  """Images in {root}/{train2017,val2017} (or root/images/...), label maps in
  root/stuffthingmaps_trainval2017/{train2017,val2017}, instance maps (optional) in
  root/{train_inst,val_inst} (SPADE's names) or root/instances/{train2017,val2017}."""
  sub = SPLITS['coco_stuff'][split]
  image_dir = _first_dir([os.path.join(root, sub), os.path.join(root, 'images', sub)],
                         f'COCO {sub} image')
  label_dir = _first_dir([os.path.join(root, 'stuffthingmaps_trainval2017', sub),
                          os.path.join(root, 'stuffthingmaps', sub)], f'COCO-Stuff {sub} label')
  partners = {'label': list_files(label_dir, LABEL_EXTS, 'COCO-Stuff label map')}
  if use_instance:
    inst_dir = _first_dir([os.path.join(root, f'{split}_inst'), os.path.join(root, 'instances', sub)],
                          f'COCO {sub} instance map (config.dataset.no_instance=False)')
    partners['instance'] = list_files(inst_dir, LABEL_EXTS, 'COCO instance map')
  records = pair_by_key(list_files(image_dir, IMAGE_EXTS, 'COCO image'), partners, on_bad)
  return PairedFileSource('coco_stuff', split, root, records, LabelMapping(label_nc, True),
                          use_instance=use_instance)


_CELEBA_PART = re.compile(r'^(\d+)_([a-z_]+)$')


def celebamask_hq_source(root: str, split: str, label_nc: int = 19, use_instance: bool = False,
                         on_bad: str = 'error',
                         num_train: int = CELEBA_NUM_TRAIN) -> PairedFileSource:
  """CelebA-HQ-img/<id>.jpg with CelebAMask-HQ-mask-anno/<group>/<id:05d>_<part>.png masks,
  combined into one label map (background 0, parts 1..18); ids < num_train are the train split."""
  if use_instance:
    raise ValueError('CelebAMask-HQ has no instance maps: set config.dataset.no_instance=True')
  if label_nc != len(CELEBA_PARTS) + 1:
    raise ValueError(f'CelebAMask-HQ has {len(CELEBA_PARTS) + 1} classes, not label_nc={label_nc}')
  images = list_files(os.path.join(root, 'CelebA-HQ-img'), IMAGE_EXTS, 'CelebA-HQ image')
  masks = list_files(os.path.join(root, 'CelebAMask-HQ-mask-anno'), LABEL_EXTS,
                     'CelebAMask-HQ mask', recursive=True)
  parts: dict[str, list] = {}
  for key, path in masks.items():
    m = _CELEBA_PART.match(key.rsplit('/', 1)[-1])
    if not m or m.group(2) not in CELEBA_PARTS:
      log.warning('Ignoring %s: not named <id>_<part>.png with a CelebAMask-HQ part', path)
      continue
    parts.setdefault(str(int(m.group(1))), []).append((CELEBA_PARTS.index(m.group(2)) + 1, path))
  keep = lambda k: k.isdigit() and ((int(k) < num_train) == (split == 'train'))
  images = {k: v for k, v in images.items() if keep(k)}
  parts = {k: tuple(sorted(v)) for k, v in parts.items() if keep(k)}
  if not images:
    raise FileNotFoundError(f'CelebA-HQ: no images of the {split} split in {root}/CelebA-HQ-img')
  records = pair_by_key(images, {'parts': parts}, on_bad)
  return PairedFileSource('celebamask_hq', split, root, records,
                          LabelMapping(label_nc, dontcare=False), same_size=False)


def folder_source(root: str, split: str, label_nc: int, dontcare: bool = False,
                  use_instance: bool = False, on_bad: str = 'error') -> PairedFileSource:
  """root/images[/<split>] and root/labels[/<split>] (+ root/instances[/<split>]) matched by file
  stem; label ids in [0, label_nc) (255 = don't care if configured). Without split subfolders the
  flat folders serve every split."""
  def folder(kind: str) -> str:
    with_split = os.path.join(root, kind, split)
    return with_split if os.path.isdir(with_split) else os.path.join(root, kind)
  images = list_files(folder('images'), IMAGE_EXTS, 'image')
  partners = {'label': list_files(folder('labels'), LABEL_EXTS, 'label map')}
  if use_instance:
    partners['instance'] = list_files(folder('instances'), LABEL_EXTS, 'instance map')
  records = pair_by_key(images, partners, on_bad)
  return PairedFileSource('folder', split, root, records, LabelMapping(label_nc, dontcare),
                          use_instance=use_instance)


def make_source(config: Any, split: str, height: int | None = None,
                width: int | None = None) -> Any:
  """The source named by `config.dataset.name` for split 'train' or 'val'.

  The synthetic source renders at (height, width) (the preprocessing's load size); file sources
  read `config.dataset.root`.
  """
  if split not in ('train', 'val'):
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")
  d = config.dataset
  use_instance = not d.no_instance
  if d.name == 'synthetic':
    from ecgan_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    size = int(d.synthetic_size) if split == 'train' else max(1, int(d.synthetic_size) // 10)
    return synthetic.SyntheticScenes(height, width, size=size, seed=0, split=split,
                                     with_instances=use_instance)
  if not d.root:
    raise ConfigError(f'config.dataset.root is not set: where is the {d.name} dataset? Pass '
                      '--config.dataset.root=/path/to/it')
  root = os.path.expanduser(d.root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f'config.dataset.root={root} is not a folder')
  kw = dict(use_instance=use_instance, on_bad=d.on_bad_example)
  if d.name == 'ade20k':
    return ade20k_source(root, split, d.label_nc, **kw)
  if d.name == 'cityscapes':
    return cityscapes_source(root, split, d.label_nc, **kw)
  if d.name == 'coco_stuff':
    return coco_stuff_source(root, split, d.label_nc, **kw)
  if d.name == 'celebamask_hq':
    return celebamask_hq_source(root, split, d.label_nc, **kw)
  if d.name == 'folder':
    return folder_source(root, split, d.label_nc, bool(d.contain_dontcare_label), **kw)
  raise ValueError(f'config.dataset.name={d.name!r} is not a known dataset')
