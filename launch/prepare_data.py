"""`python launch/prepare_data.py ...` = `ecgan-prepare-data` (see ecgan_jax/cli/prepare_data.py for the flags)."""
from ecgan_jax.cli import prepare_data

if __name__ == '__main__':
  prepare_data.run()
