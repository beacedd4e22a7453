"""The optimizer every trainer uses: AdamW with warm-up and cosine decay, clipped gradients.

AdamW updates the parameters in their own dtype (`param_dtype`: fp32 master weights by
default); the model casts them to its compute dtype (`dtype`, e.g. bf16) in each pass.
"""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then cosine decay to
  `learning_rate * final_lr_fraction` at `total_steps`.

  Args:
    config: with fields learning_rate, warmup_steps, total_steps, final_lr_fraction.
  """
  warmup = max(1, min(config.warmup_steps, config.total_steps - 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate, warmup_steps=warmup,
      decay_steps=max(config.total_steps, warmup + 1),
      end_value=config.learning_rate * config.final_lr_fraction)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW (decoupled weight decay) after clipping the global gradient norm.

  Args:
    config: the optimizer fields of a training config: learning_rate, warmup_steps,
      total_steps, final_lr_fraction, weight_decay, b1, b2, grad_clip_norm.
  """
  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip_norm),
      optax.adamw(learning_rate_schedule(config), b1=config.b1, b2=config.b2,
                  weight_decay=config.weight_decay))


def default_optimizer_config(**overrides) -> ml_collections.ConfigDict:
  """The optimizer fields with defaults; keyword arguments override them."""
  config = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, warmup_steps=20, total_steps=200, final_lr_fraction=0.1,
      weight_decay=0.01, b1=0.9, b2=0.95, grad_clip_norm=1.0))
  config.update(overrides)
  return config
