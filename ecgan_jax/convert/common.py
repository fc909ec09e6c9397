"""Shared helpers of the PyTorch -> Flax converters: reading local state_dicts, layout transposes,
building nested Flax variable trees, checking them against a model, and msgpack I/O.

Nothing here downloads anything: every reader takes a local file or folder.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import numpy as np

StateDict = dict[str, np.ndarray]

# Names looked up, in order, when a folder is given (Hugging Face `save_pretrained` layouts).
_FOLDER_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                 'pytorch_model.bin.index.json')
_TORCH_SUFFIXES = ('.bin', '.pth', '.pt', '.ckpt')
MSGPACK_SUFFIX = '.msgpack'


class ConversionError(ValueError):
  """A checkpoint does not fit the model: the message names the offending keys or shapes."""


def resolve_checkpoint_file(path: str) -> str:
  """The weights file of `path`: the path itself, or the HF weights file inside a folder."""
  if os.path.isdir(path):
    for name in _FOLDER_FILES:
      candidate = os.path.join(path, name)
      if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(f'No weights file in folder {path!r}: expected one of {_FOLDER_FILES}')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Checkpoint {path!r} does not exist (weights are never downloaded; '
                            'give a local file or folder)')
  return path


def _to_numpy(value: Any) -> np.ndarray:
  """A torch tensor or array as a numpy array; bfloat16/float16 become float32."""
  if hasattr(value, 'detach'):  # torch.Tensor, without importing torch here.
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    value = value.numpy()
  value = np.asarray(value)
  if value.dtype.kind == 'f' or value.dtype.name == 'bfloat16':
    value = value.astype(np.float32)
  return value


def _load_torch_file(path: str) -> StateDict:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        f'Reading the PyTorch checkpoint {path!r} needs torch, which is not installed. Install a CPU '
        'build (`pip install torch`, see requirements-test.txt) or convert the file to '
        '.safetensors, which is read without torch.') from e
  obj = torch.load(path, map_location='cpu', weights_only=True)
  # Training checkpoints often wrap the weights.
  for key in ('state_dict', 'model', 'model_state_dict'):
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping):
    raise ConversionError(f'{path!r} holds a {type(obj).__name__}, not a state_dict mapping')
  return {k: _to_numpy(v) for k, v in obj.items() if hasattr(v, 'shape')}


def _load_safetensors_file(path: str) -> StateDict:
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  return {k: _to_numpy(v) for k, v in load_file(path).items()}


def load_state_dict(path: str) -> StateDict:
  """Reads a PyTorch state_dict as {key: float32 numpy array} from a local .safetensors file (no
  torch needed), a torch .bin/.pth/.pt file (needs torch), a sharded HF index .json, or a folder
  holding one of these under HF's file names."""
  path = resolve_checkpoint_file(path)
  if path.endswith('.index.json'):
    with open(path) as f:
      shards = sorted(set(json.load(f)['weight_map'].values()))
    state: StateDict = {}
    for shard in shards:
      state.update(load_state_dict(os.path.join(os.path.dirname(path), shard)))
    return state
  if path.endswith('.safetensors'):
    return _load_safetensors_file(path)
  if path.endswith(_TORCH_SUFFIXES):
    return _load_torch_file(path)
  raise ConversionError(f'Unknown checkpoint format {path!r}: expected .safetensors, one of '
                        f'{_TORCH_SUFFIXES}, an HF index .json or a folder')


def linear_kernel(w: np.ndarray) -> np.ndarray:
  """torch Linear weight [out, in] -> Flax Dense kernel [in, out]."""
  return np.ascontiguousarray(w.T)


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """torch Conv2d weight [out, in/groups, kh, kw] -> Flax Conv kernel [kh, kw, in/groups, out]."""
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def set_path(tree: dict, path: tuple[str, ...], value: Any) -> None:
  """Sets tree[path[0]]...[path[-1]] = value, creating dicts on the way; a path set twice is an
  error (two source keys for one parameter)."""
  node = tree
  for name in path[:-1]:
    node = node.setdefault(name, {})
  if path[-1] in node:
    raise ConversionError(f'Two checkpoint keys map to {"/".join(path)}')
  node[path[-1]] = value


def convert_tensor(kind: str, value: np.ndarray) -> np.ndarray:
  """Applies a layout change by kind: 'linear' | 'conv' (weights) or 'copy' (biases, norms)."""
  return {'linear': linear_kernel, 'conv': conv_kernel, 'copy': np.asarray}[kind](value)


def abstract_variables(model: nn.Module, *inputs: jax.ShapeDtypeStruct, **kwargs: Any) -> Any:
  """Shapes and dtypes of `model.init(...)`'s variables, computed with jax.eval_shape (no FLOPs)."""
  rngs = {'params': jax.random.PRNGKey(0)}
  return jax.eval_shape(lambda *xs: model.init(rngs, *xs, **kwargs), *inputs)


def check_variables(variables: Mapping, expected: Mapping, what: str) -> None:
  """Raises ConversionError unless `variables` has exactly the paths and shapes of `expected`
  (e.g. from `abstract_variables`); the message lists missing, unexpected and mis-shaped leaves."""
  got = {jax.tree_util.keystr(k): np.shape(v)
         for k, v in jax.tree_util.tree_leaves_with_path(flax.core.unfreeze(variables))}
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(flax.core.unfreeze(expected))}
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  shapes = sorted(f'{k}: checkpoint {got[k]} vs model {want[k]}'
                  for k in set(got) & set(want) if got[k] != want[k])
  if missing or extra or shapes:
    lines = [f'{what} does not fit the model:']
    for title, items in (('missing', missing), ('unexpected', extra), ('shape mismatch', shapes)):
      if items:
        lines.append(f'  {title} ({len(items)}): ' + ', '.join(items[:8]) +
                     (' ...' if len(items) > 8 else ''))
    raise ConversionError('\n'.join(lines))


def save_variables(variables: Any, path: str) -> str:
  """Writes a Flax variable tree to `path` with flax msgpack serialisation; returns the path."""
  host = jax.tree.map(np.asarray, flax.core.unfreeze(variables))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(host))
  return path


def load_variables(path: str) -> dict:
  """Reads a Flax variable tree written by `save_variables` (nested dicts of numpy arrays)."""
  with open(path, 'rb') as f:
    return flax.serialization.msgpack_restore(f.read())


def is_msgpack(path: str) -> bool:
  return os.path.isfile(path) and path.endswith(MSGPACK_SUFFIX)


def tree_num_params(tree: Any) -> int:
  """Total number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree)))


def map_state_dict(state: StateDict, rule: Callable[[str], tuple[str, tuple[str, ...], str] | None],
                   ignore: Callable[[str], bool]) -> tuple[dict, list[str]]:
  """Builds a Flax variable tree from `state`.

  `rule(key)` gives (collection, path, kind) for a key it knows, or None; `ignore(key)` marks keys
  that are dropped on purpose. Returns (variables, unknown keys); the caller decides whether
  unknown keys are an error.
  """
  variables: dict = {}
  unknown = []
  for key, value in state.items():
    target = rule(key)
    if target is None:
      if not ignore(key):
        unknown.append(key)
      continue
    collection, path, kind = target
    set_path(variables, (collection,) + path, convert_tensor(kind, value))
  return variables, sorted(unknown)


def map_known_state_dict(state: StateDict,
                         rule: Callable[[str], tuple[str, tuple[str, ...], str] | None],
                         ignore: Callable[[str], bool], source: str) -> dict:
  """`map_state_dict` where an unknown key is an error: ConversionError naming up to 8 of them as
  'Keys that are not part of <source>: [...]'."""
  variables, unknown = map_state_dict(state, rule, ignore)
  if unknown:
    raise ConversionError(f'Keys that are not part of {source}: {unknown[:8]}'
                          + (' ...' if len(unknown) > 8 else ''))
  return variables
