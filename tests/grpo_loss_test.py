"""Tests for GRPO's pure functions against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax.training import grpo_loss


class GroupAdvantagesTest(absltest.TestCase):

  def test_hand_computed(self):
    adv = grpo_loss.group_advantages(jnp.array([[1.0, 3.0], [0.0, 0.0], [1.0, 2.0]]), eps=0.0)
    # group 0: mean 2, population std 1 -> (-1, 1); group 1: all equal -> no signal.
    np.testing.assert_allclose(adv, [[-1.0, 1.0], [0.0, 0.0], [-1.0, 1.0]], atol=1e-6)

  def test_three_rollouts(self):
    adv = grpo_loss.group_advantages(jnp.array([[0.0, 0.0, 3.0]]), eps=0.0)
    std = math.sqrt(2.0)  # mean 1, deviations (-1, -1, 2): variance 6/3
    np.testing.assert_allclose(adv, [[-1 / std, -1 / std, 2 / std]], rtol=1e-6)


class GrpoLossTest(absltest.TestCase):

  def test_k3_is_zero_at_equality_and_matches_formula(self):
    self.assertEqual(float(grpo_loss.k3_kl(jnp.array([[-1.0]]), jnp.array([[-1.0]]))[0, 0]), 0)
    d = -0.5 - (-1.0)
    np.testing.assert_allclose(grpo_loss.k3_kl(jnp.array([[-1.0]]), jnp.array([[-0.5]])),
                               [[math.exp(d) - d - 1]], rtol=1e-6)

  def test_hand_computed_loss_with_clipping(self):
    # Two sequences of two tokens; only the second token of each is an agent token.
    logp = jnp.log(jnp.array([[0.5, 0.6], [0.5, 0.2]]))
    old = jnp.log(jnp.array([[0.5, 0.4], [0.5, 0.4]]))
    mask = jnp.array([[0.0, 1.0], [0.0, 1.0]])
    adv = jnp.array([1.0, -1.0])
    loss, m = grpo_loss.grpo_loss(logp, old, logp, adv, mask, clip_eps=0.2, kl_coef=0.0)
    # seq 0: r = 1.5, A = 1 -> min(1.5, 1.2) = 1.2; seq 1: r = 0.5, A = -1 ->
    # min(-0.5, -0.8) = -0.8. loss = -(1.2 - 0.8) / 2.
    self.assertAlmostEqual(float(loss), -0.2, places=5)
    self.assertAlmostEqual(float(m["clip_fraction"]), 1.0)
    self.assertAlmostEqual(float(m["kl"]), 0.0)

  def test_kl_term_and_masking(self):
    logp = jnp.log(jnp.array([[0.5, 0.25]]))
    ref = jnp.log(jnp.array([[0.9, 0.5]]))
    mask = jnp.array([[0.0, 1.0]])
    loss, m = grpo_loss.grpo_loss(logp, logp, ref, jnp.zeros(1), mask, kl_coef=0.1)
    d = math.log(0.5) - math.log(0.25)
    self.assertAlmostEqual(float(m["kl"]), math.exp(d) - d - 1, places=5)
    self.assertAlmostEqual(float(loss), 0.1 * (math.exp(d) - d - 1), places=5)

  def test_gradient_pushes_up_positive_advantage_tokens(self):
    old = jnp.log(jnp.array([[0.5, 0.5]]))
    mask = jnp.array([[0.0, 1.0]])
    grad = jax.grad(lambda lp: grpo_loss.grpo_loss(lp, old, old, jnp.ones(1), mask)[0])(old)
    self.assertLess(float(grad[0, 1]), 0.0)   # raising logp lowers the loss
    self.assertEqual(float(grad[0, 0]), 0.0)  # prompt token: no gradient

  def test_sequence_mean_aggregation(self):
    per_token = jnp.array([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]])
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    self.assertAlmostEqual(float(grpo_loss.aggregate(per_token, mask, "token-mean")), 7 / 4)
    self.assertAlmostEqual(
        float(grpo_loss.aggregate(per_token, mask, "sequence-mean-token-mean")), 2.5)


if __name__ == "__main__":
  absltest.main()
