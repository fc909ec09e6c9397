"""StepOptions: every static switch and weight of the training step, read from the config once.

The step and the objectives take this frozen dataclass instead of the config, so what a step
depends on is listed in one place and nothing in a traced function reads the config.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import optax

from ecgan_jax import configuration
from ecgan_jax.training import state as state_lib


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """Static settings of one training step (see configs/default.py for each field's meaning)."""
  num_classes: int
  ignore_label: int | None
  gan_mode: str
  # Eq. 9 / Eq. 8 weights
  lambda_gan: float
  lambda_feat: float
  lambda_vgg: float
  lambda_sim: float
  lambda_contrastive: float
  lambda_class_l1: float
  lambda_kld: float
  lambda_refine: float  # lambda: I'' against I' (real weighted lambda + 1 in D)
  # components (ablation switches)
  use_edge: bool
  use_vgg: bool  # lambda_vgg != 0: otherwise no VGG19 in the step
  use_similarity: bool  # and lambda_sim != 0: otherwise no G_l (nor its online update)
  train_label_generator: bool  # G_l trained online with cross-entropy (no converted checkpoint)
  use_contrastive: bool
  use_cross_scale: bool
  use_class_specific: bool
  judge_class_image: bool  # D judges [S, I_g] as a further fake (model.class_fusion 'discriminator')
  vae: bool
  # similarity loss
  sim_chunk: int
  sim_num_pixels: int
  # contrastive losses and memory bank
  strides: tuple[int, ...]  # (1,) without the multi-scale loss; one memory bank per stride
  scale_weights: tuple[float, ...]
  cross_scale_pairs: tuple[tuple[int, int], ...]
  cross_scale_weight: float
  temperature: float
  anchors_per_class: int
  max_anchor_classes: int
  bank_negatives: int
  bank_pixels_per_class: int
  contrastive_gather: str  # 'anchors' | 'maps'
  contrastive_chunk: int | None
  # optimisation
  ema_decay: float
  lr_g: optax.Schedule
  lr_d: optax.Schedule

  @classmethod
  def from_config(cls, config: Any) -> StepOptions:
    """Reads a validated config (`configuration.validate_config`)."""
    m, lc, o = config.model, config.loss, config.optim
    multiscale = bool(lc.use_multiscale)
    strides = configuration.contrastive_strides(config)
    return cls(
        num_classes=configuration.num_classes(config),
        ignore_label=configuration.ignore_label(config),
        gan_mode=lc.gan_mode,
        lambda_gan=float(lc.lambda_gan), lambda_feat=float(lc.lambda_feat),
        lambda_vgg=float(lc.lambda_vgg), lambda_sim=float(lc.lambda_sim),
        lambda_contrastive=float(lc.lambda_contrastive),
        lambda_class_l1=float(lc.lambda_class_l1), lambda_kld=float(lc.lambda_kld),
        lambda_refine=float(lc.lambda_refine),
        use_edge=bool(m.use_edge),
        use_vgg=state_lib.uses_vgg(config),
        use_similarity=state_lib.uses_similarity(config),
        train_label_generator=state_lib.label_generator_trained_online(config),
        use_contrastive=bool(lc.use_pixel_contrastive),
        use_cross_scale=bool(lc.use_cross_scale),
        use_class_specific=bool(m.use_class_specific),
        judge_class_image=bool(m.use_class_specific) and m.class_fusion == 'discriminator',
        vae=m.multimodal == 'vae',
        sim_chunk=int(lc.sim_chunk), sim_num_pixels=int(lc.sim_num_pixels),
        strides=strides,
        scale_weights=tuple(float(w) for w in lc.scale_weights) if multiscale else (1.0,),
        cross_scale_pairs=tuple((int(p), int(q)) for p, q in lc.cross_scale_pairs),
        cross_scale_weight=float(lc.cross_scale_weight),
        temperature=float(lc.temperature),
        anchors_per_class=int(lc.anchors_per_class),
        max_anchor_classes=int(lc.max_anchor_classes),
        bank_negatives=int(lc.bank_negatives),
        bank_pixels_per_class=int(lc.bank_pixels_per_class),
        contrastive_gather=lc.contrastive_gather,
        contrastive_chunk=int(lc.contrastive_chunk) or None,
        ema_decay=float(o.ema_decay),
        lr_g=state_lib.learning_rate_schedule(o.lr_g, config.train.num_steps,
                                              o.decay_second_half),
        lr_d=state_lib.learning_rate_schedule(o.lr_d, config.train.num_steps,
                                              o.decay_second_half))
