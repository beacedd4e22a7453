"""Tests for per-token log-probabilities and the SFT loss against a NumPy reference."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax.training import losses


def numpy_log_probs(logits, tokens):
  out = np.zeros(tokens.shape)
  for b in range(tokens.shape[0]):
    for t in range(1, tokens.shape[1]):
      row = logits[b, t - 1].astype(np.float64)
      out[b, t] = row[tokens[b, t]] - np.log(np.exp(row - row.max()).sum()) - row.max()
  return out


class LossesTest(absltest.TestCase):

  def test_token_log_probs_and_sft_loss(self):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
    tokens = rng.integers(0, 7, (2, 5))
    mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], np.float32)
    expected = numpy_log_probs(logits, tokens)
    got = losses.token_log_probs(jnp.asarray(logits), jnp.asarray(tokens))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(losses.sft_loss(jnp.asarray(logits), jnp.asarray(tokens), mask),
                               -(expected * mask).sum() / mask.sum(), atol=1e-5)

  def test_masked_mean_of_empty_mask_is_zero(self):
    self.assertEqual(float(losses.masked_mean(jnp.ones((2, 3)), jnp.zeros((2, 3)))), 0.0)


if __name__ == "__main__":
  absltest.main()
