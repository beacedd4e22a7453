"""Per-token log-probabilities and the masked losses built on them (shared by SFT and GRPO).

Convention: for tokens [B, T], position t's logits predict tokens[t + 1]. A loss mask [B, T]
weighs the prediction *of* token t, so mask[:, 0] is never used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def token_log_probs(logits: Float[Array, "B T V"], tokens: Int[Array, "B T"]
                    ) -> Float[Array, "B T"]:
  """log p(tokens[t] | tokens[:t]) for t >= 1, in float32; column 0 is 0.

  Args:
    logits: [B, T, V] logits of every position (position t predicts t + 1).
    tokens: [B, T] the token ids.
  Returns:
    [B, T] log-probabilities aligned with `tokens`.
  """
  logits = logits[:, :-1].astype(jnp.float32)
  # The picked logit less the log-normalizer: no [B, T, V] log-softmax is materialized (one
  # pass less over the logits, and one such array less in memory).
  picked = jnp.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0]
  return jnp.pad(picked - jax.nn.logsumexp(logits, axis=-1), ((0, 0), (1, 0)))


def masked_mean(values: Float[Array, "B T"], mask: Float[Array, "B T"]) -> Float[Array, ""]:
  """Sum of values * mask over all tokens, divided by the mask's sum (at least 1)."""
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sft_loss(logits: Float[Array, "B T V"], tokens: Int[Array, "B T"],
             loss_mask: Float[Array, "B T"]) -> Float[Array, ""]:
  """Mean negative log-likelihood of the masked (agent) tokens."""
  return -masked_mean(token_log_probs(logits, tokens), loss_mask)
