"""`python launch/evaluate.py ...` = `ecgan-evaluate` (see ecgan_jax/cli/evaluate.py for the flags)."""
from ecgan_jax.cli import evaluate

if __name__ == '__main__':
  evaluate.run()
