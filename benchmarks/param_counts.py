"""Parameter counts per network component (abstract shapes only: runs in seconds on a CPU).

  python benchmarks/param_counts.py                    # ADE20K, ngf = ndf = 64 (full model, B8)
  python benchmarks/param_counts.py cityscapes coco_stuff:B4 synthetic:tiny

Each argument is a config file name under configs/ with an optional ':ARGS' as on the command line
of the launchers. For ADE20K the released PyTorch ECGAN code (Ha0Tang/ECGAN at 4fcb0cc) is printed
beside it; docs/models.md explains the differences.
"""
from __future__ import annotations

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ecgan_jax.models import parameter_counts  # noqa: E402

# Counted by instantiating the released PyTorch modules for ADE20K (ngf = ndf = 64, z_dim 256).
REFERENCE_ADE20K = {
    'E (shared SPADE trunk)': 96_490_752,
    'G_e (edge branch)': 24_467,
    'G_i (image branch)': 24_467,
    'G_t (attention-guided edge transfer)': 0,
    'G_s (semantic-preserving module)': 625_691,  # includes an unused Linear(150, 150): 22,650
    'G_c (class-specific decoder)': None,  # not in the released code
    'projection head (contrastive)': None,  # not in the released code
    'generator total': 97_165_377,
    'D (multi-scale discriminator)': 5_836_930,
    'style encoder': 10_463_424,
}


def main(argv: list[str]) -> None:
  for spec in argv or ['ade20k']:
    name, _, arg = spec.partition(':')
    config = importlib.import_module(f'configs.{name}').get_config(arg or None)
    table = parameter_counts(config)
    ref = REFERENCE_ADE20K if name == 'ade20k' and not arg else None
    print(f'\n{spec}: ngf={config.model.ngf}, ndf={config.model.ndf}, '
          f'{config.dataset.crop_size}x{config.dataset.crop_size / config.dataset.aspect_ratio:.0f}'
          f' (WxH), ablation {config.ablation}')
    print(f'{"component":40s} {"ecgan-jax":>12s}' + (f' {"PyTorch ECGAN":>14s}' if ref else ''))
    for key, count in table.items():
      line = f'{key:40s} {count:>12,d}'
      if ref:
        line += f' {ref[key]:>14,d}' if ref[key] is not None else f' {"-":>14s}'
      print(line)


if __name__ == '__main__':
  main(sys.argv[1:])
