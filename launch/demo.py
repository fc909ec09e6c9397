"""Paint-by-label web demo: see ecgan_jax/cli/demo.py (ecgan-demo)."""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E401,E702
from ecgan_jax import cli  # noqa: E402
if __name__ == '__main__':
  cli.ecgan_demo()
