"""What every command shares: flag parsing with one-line errors, config overrides with "did you
mean", the console's log level, and the user-error / bug split.

A user error (a bad flag, config field, data file, missing weights) ends the command with one or
two lines on stderr naming the field or file and what to do, exit status 2; `--verbosity=1` shows
the traceback as well. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from typing import Any, Callable, Sequence

from absl import app
from absl import flags

from ecgan_jax import configuration
from ecgan_jax.data.transforms import BadExampleError
from ecgan_jax.training import logging_utils

# Exceptions that mean "the input is wrong", not "the code is wrong".
USER_ERRORS = (configuration.ConfigError, BadExampleError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, app.UsageError)
_OVERRIDE = re.compile(r'^--?(?:no)?config\.([\w.]+)')


def prog() -> str:
  return os.path.basename(sys.argv[0]) if sys.argv else 'ecgan'


def user_error_message(e: BaseException) -> str:
  """The one or two lines printed for a user error (no traceback)."""
  return str(e).strip() or type(e).__name__


def fail(message: str, status: int = 2) -> None:
  """Prints `prog: error: message` (one line per line of `message`) and exits."""
  print(f'{prog()}: error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


def _config_arg(argv: Sequence[str]) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      return a.split('=', 1)[1]
    if a == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def load_config_file(spec: str) -> Any:
  """`path[:args]` -> get_config(args), the way --config=... loads it (for error messages)."""
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_ecgan_config_for_hint', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def leaf_paths(config: Any, prefix: str = '') -> list[str]:
  """Dotted paths of every field of a ConfigDict (nested ones recursively)."""
  out = []
  for key in config.keys():
    value = config[key]
    path = f'{prefix}{key}'
    out.append(path)
    if hasattr(value, 'keys') and not isinstance(value, (str, bytes)):
      out.extend(leaf_paths(value, path + '.'))
  return out


def unknown_override(config: Any, override: str) -> str | None:
  """Message for `--config.<override>` when a component of the dotted path is not a field of
  `config` (with the closest field at that level or anywhere as "did you mean"); None if valid."""
  node, walked = config, []
  for part in override.split('.'):
    keys = list(node.keys()) if hasattr(node, 'keys') else []
    if part not in keys:
      where = 'config' + ''.join('.' + w for w in walked)
      near = [('.'.join(walked + [k])) for k in difflib.get_close_matches(part, keys, 1, 0.6)]
      if not near:  # e.g. --config.batch_sise: the field lives one level down
        paths = leaf_paths(config)
        by_leaf = {p.rsplit('.', 1)[-1]: p for p in paths}
        near = [by_leaf[k] for k in difflib.get_close_matches(part, list(by_leaf), 1, 0.6)]
      hint = f'; did you mean --config.{near[0]}?' if near else (
          f'; its fields are: {", ".join(keys)}' if keys else '')
      return f'--config.{override}: {where} has no field {part!r}{hint}'
    node, walked = node[part], walked + [part]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing where every mistake is one line: unknown/ill-typed flags, a config file that
  fails to load, an override of a field that does not exist (with "did you mean")."""
  spec = _config_arg(argv)
  if spec is not None and not os.path.isfile(spec.partition(':')[0]):
    fail(f'--config={spec}: no such config file (e.g. --config=configs/synthetic.py)')
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if 'Traceback' in text:  # a config file that raised: its first and last lines say it all
      lines = [l for l in text.splitlines() if l.strip()]
      text = f'{lines[0].rstrip(": ")}: {lines[-1].strip()}'
    fail(f'{text}\nPass --helpshort or --helpfull to see the flags.')
  except Exception as e:  # pylint: disable=broad-except
    if spec is None:
      raise
    try:
      config = load_config_file(spec)
    except Exception as load_error:  # pylint: disable=broad-except
      fail(f'--config={spec}: {load_error}')
    for a in argv:
      m = _OVERRIDE.match(a)
      if m:
        message = unknown_override(config, m.group(1))
        if message:
          fail(message)
    raise e
  return argv


def verbosity() -> int:
  """absl's --verbosity as given on the command line: -1 when absent (quiet console), 0: every
  INFO line, 1: DEBUG lines and tracebacks of user errors. (absl itself sets it to 0 when absent.)"""
  flag = flags.FLAGS['verbosity'] if 'verbosity' in flags.FLAGS else None
  return int(flag.value) if flag is not None and flag.present else -1


def run(main: Callable[[list[str]], Any]) -> None:
  """app.run(main) with one-line user errors and a quiet console (see module docstring)."""

  def wrapped(argv: list[str]) -> Any:
    logging_utils.setup_console(verbosity())
    try:
      return main(argv)
    except USER_ERRORS as e:
      if verbosity() >= 1:
        raise
      fail(user_error_message(e))

  app.run(wrapped, flags_parser=parse_flags)
