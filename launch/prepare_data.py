"""`python launch/prepare_data.py ...` = `ecgan-prepare-data` (flags: ecgan_jax/cli/prepare_data.py); also runs from a
clone without `pip install` (the repo root goes on sys.path)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ecgan_jax import cli  # noqa: E402

if __name__ == '__main__':
  cli.ecgan_prepare_data()
