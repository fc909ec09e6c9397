"""`python launch/train.py ...` = `ecgan-train` (see ecgan_jax/cli/train.py for the flags)."""
from ecgan_jax.cli import train

if __name__ == '__main__':
  train.run()
