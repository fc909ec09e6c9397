"""Input pipelines: dataset sources in their shipped layouts, synthetic scenes, Canny edges, grain.

Public API:
  make_train_iterator(config, num_local_devices, process_index=None, process_count=None)
  make_eval_iterator(config, num_local_devices, process_index=None, process_count=None,
                     num_examples=None, batch_size=None)
  prepare_dataset(config, directory, splits=('train', 'val'), num_shards=1)
  make_source(config, split, height, width), SyntheticScenes, canny_edges, BadExampleError
See docs/data.md for the batch format and the dataset layouts.
"""
from ecgan_jax.data.edges import canny_edges
from ecgan_jax.data.pipeline import build_eval_dataset
from ecgan_jax.data.pipeline import build_train_dataset
from ecgan_jax.data.pipeline import make_eval_iterator
from ecgan_jax.data.pipeline import make_train_iterator
from ecgan_jax.data.pipeline import prepare_dataset
from ecgan_jax.data.sources import make_source
from ecgan_jax.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from ecgan_jax.data.synthetic import SyntheticScenes
from ecgan_jax.data.transforms import BadExampleError
from ecgan_jax.data.transforms import geometry

__all__ = [
    'BadExampleError', 'SYNTHETIC_CLASS_NAMES', 'SyntheticScenes', 'build_eval_dataset',
    'build_train_dataset', 'canny_edges', 'geometry', 'make_eval_iterator', 'make_source',
    'make_train_iterator', 'prepare_dataset',
]
