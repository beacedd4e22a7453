"""GRPO as small pure functions: group-normalized advantages, the k3 KL estimator, the clipped
policy-gradient loss over agent tokens.

Shapes: N groups (experiments) x G rollouts each = B sequences of T tokens.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jaxtyping import Array, Float

from autollm_jax.training import losses

Aggregation = Literal["token-mean", "sequence-mean-token-mean"]


def group_advantages(rewards: Float[Array, "N G"], eps: float = 1e-6) -> Float[Array, "N G"]:
  """(r - mean_group) / (std_group + eps); a group whose rewards are all equal gets zeros.

  Args:
    rewards: [N, G] one scalar reward per rollout, grouped by experiment.
    eps: added to the (population) standard deviation.
  """
  mean = rewards.mean(axis=1, keepdims=True)
  std = rewards.std(axis=1, keepdims=True)
  return jnp.where(std > 0, (rewards - mean) / (std + eps), 0.0)


def k3_kl(logp: Float[Array, "B T"], ref_logp: Float[Array, "B T"]) -> Float[Array, "B T"]:
  """Per-token KL(pi || pi_ref) by the k3 estimator ("low_var_kl"): exp(d) - d - 1,
  d = ref_logp - logp, evaluated on tokens sampled from pi. Non-negative, unbiased."""
  d = ref_logp - logp
  return jnp.exp(d) - d - 1.0


def aggregate(per_token: Float[Array, "B T"], mask: Float[Array, "B T"],
              how: Aggregation) -> Float[Array, ""]:
  """Token-mean over the whole batch, or the mean over sequences of each one's token-mean."""
  if how == "token-mean":
    return losses.masked_mean(per_token, mask)
  per_seq = jnp.sum(per_token * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
  has_tokens = (jnp.sum(mask, axis=1) > 0).astype(per_token.dtype)
  return jnp.sum(per_seq * has_tokens) / jnp.maximum(jnp.sum(has_tokens), 1.0)


def grpo_loss(logp: Float[Array, "B T"], old_logp: Float[Array, "B T"],
              ref_logp: Float[Array, "B T"], advantages: Float[Array, "B"],
              loss_mask: Float[Array, "B T"], clip_eps: float = 0.2, kl_coef: float = 0.04,
              aggregation: Aggregation = "token-mean"
              ) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
  """The GRPO objective, as a loss to minimize.

  Per agent token: -(min(r A, clip(r, 1 - eps, 1 + eps) A) - kl_coef * k3), with the ratio
  r = exp(logp - old_logp) to the policy that sampled the rollout.

  Args:
    logp: [B, T] log-probs of the sampled tokens under the policy being trained.
    old_logp: [B, T] the same under the sampling policy.
    ref_logp: [B, T] the same under the reference (distilled) policy.
    advantages: [B] one advantage per sequence (from group_advantages).
    loss_mask: [B, T] 1 on agent tokens (reasoning and actions), 0 on prompt and feedback.
    clip_eps: the ratio's clip range.
    kl_coef: the KL penalty's weight (0 turns it off).
    aggregation: how per-token terms are averaged.
  Returns:
    (loss, metrics: pg_loss, kl, clip_fraction, ratio_mean).
  """
  ratio = jnp.exp(logp - old_logp)
  adv = advantages[:, None]
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
  pg = -jnp.minimum(unclipped, clipped)
  kl = k3_kl(logp, ref_logp)
  loss = aggregate(pg + kl_coef * kl, loss_mask, aggregation)
  metrics = {
      "pg_loss": aggregate(pg, loss_mask, aggregation),
      "kl": aggregate(kl, loss_mask, aggregation),
      "clip_fraction": losses.masked_mean((clipped != unclipped).astype(jnp.float32),
                                          loss_mask),
      "ratio_mean": losses.masked_mean(ratio, loss_mask),
  }
  return loss, metrics
