"""ecgan-jax: ECGAN and ECGAN++ (edge-guided GANs with multi-scale contrastive learning) in JAX/Flax.

`ecgan_jax.load(workdir, step=None)` restores a trained generator for inference (see
docs/inference.md); the training, data, model and loss APIs live in the subpackages.
"""

__version__ = '0.1.0'


def load(workdir: str, step: int | None = None, **kwargs):
  """Restores `workdir`'s checkpoint (latest, or `step`) as an `inference.Synthesizer`;
  keyword arguments go to `ecgan_jax.inference.load` (use_ema=True, config=None)."""
  # Imported here so that `import ecgan_jax` stays light (no JAX backend start-up).
  from ecgan_jax import inference  # pylint: disable=import-outside-toplevel
  return inference.load(workdir, step, **kwargs)
