"""Command-line entry points. The console scripts (ecgan-train, ...) and the two-line wrappers in
launch/ call the functions here, named as the scripts (the submodules have the short names). Each
first preloads a faster malloc (`allocator.preload`: a re-execution of the process, when one is
installed), then imports its command's module (where main() and the flags live) and runs it."""
import importlib

from ecgan_jax.cli import allocator


def _command(module: str, function: str = 'run'):
  def entry() -> None:
    allocator.preload()
    getattr(importlib.import_module(f'ecgan_jax.cli.{module}'), function)()
  entry.__name__ = entry.__qualname__ = 'ecgan_' + module
  entry.__doc__ = f'Console entry point: ecgan_jax.cli.{module}.{function}() under a fast malloc.'
  return entry


ecgan_train = _command('train')
ecgan_evaluate = _command('evaluate')
ecgan_synthesize = _command('synthesize', 'main')
ecgan_demo = _command('demo', 'main')
ecgan_convert_weights = _command('convert_weights')
ecgan_prepare_data = _command('prepare_data')
