"""`python launch/convert_weights.py ...` = `ecgan-convert-weights` (see ecgan_jax/cli/convert_weights.py for the flags)."""
from ecgan_jax.cli import convert_weights

if __name__ == '__main__':
  convert_weights.run()
