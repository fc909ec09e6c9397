"""ecgan-jax: ECGAN and ECGAN++ (edge-guided GANs with multi-scale contrastive learning) in JAX/Flax."""

__version__ = '0.1.0'
