"""`python launch/evaluate.py ...` = `ecgan-evaluate` (flags: ecgan_jax/cli/evaluate.py); also runs
from a clone without `pip install` (the repo root goes on sys.path)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ecgan_jax import cli  # noqa: E402

if __name__ == '__main__':
  cli.ecgan_evaluate()
