"""Tests for the learning-rate schedule and the clipped AdamW."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax.training import optimizer


class OptimizerTest(absltest.TestCase):

  def test_schedule_warms_up_then_decays_to_the_final_fraction(self):
    config = optimizer.default_optimizer_config(learning_rate=1e-3, warmup_steps=10,
                                                total_steps=110, final_lr_fraction=0.1)
    lr = optimizer.learning_rate_schedule(config)
    self.assertEqual(float(lr(0)), 0.0)
    self.assertAlmostEqual(float(lr(5)), 5e-4, places=9)
    self.assertAlmostEqual(float(lr(10)), 1e-3, places=9)
    self.assertAlmostEqual(float(lr(60)), 1e-4 + 0.5 * 9e-4, places=8)  # cosine midpoint
    self.assertAlmostEqual(float(lr(110)), 1e-4, places=9)

  def test_gradients_are_clipped_to_the_global_norm_before_adam(self):
    config = optimizer.default_optimizer_config(grad_clip_norm=1.0, b1=0.9)
    opt = optimizer.make_optimizer(config)
    params = {"w": jnp.zeros(4)}
    _, state = opt.update({"w": jnp.array([30.0, 40.0, 0.0, 0.0])}, opt.init(params), params)
    adam_state = state[1][0]  # chain(clip, adamw(scale_by_adam, ...))
    # Adam's first moment after one step is (1 - b1) * the clipped gradient (norm 1).
    np.testing.assert_allclose(adam_state.mu["w"], [0.06, 0.08, 0.0, 0.0], rtol=1e-5)


if __name__ == "__main__":
  absltest.main()
