"""Tests for regret: hand-computed values, direction handling, NumPy and JAX alike."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax import regret


class RegretTest(absltest.TestCase):

  def test_minimized_metric(self):
    y = np.array([2.2, 2.3, 2.5, 3.0, 7.0])  # a diverged run at 7.0
    best, worst, median = regret.normalizers(y, +1.0)
    self.assertEqual((best, worst, median), (2.2, 7.0, 2.5))
    self.assertAlmostEqual(regret.normalized_regret(2.3, best, worst), 0.1 / 4.8)
    self.assertAlmostEqual(regret.strict_regret(2.3, best, median), 0.1 / 0.3)
    self.assertEqual(regret.strict_regret(3.0, best, median), 1.0)  # worse than the median
    self.assertEqual(regret.normalized_regret(2.2, best, worst), 0.0)

  def test_maximized_metric_is_negated(self):
    y = np.array([0.3, 0.5, 0.6])
    best, worst, median = regret.normalizers(y, -1.0)
    self.assertEqual((best, worst, median), (-0.6, -0.3, -0.5))
    self.assertAlmostEqual(regret.normalized_regret(-0.5, best, worst), 1 / 3)
    self.assertAlmostEqual(regret.strict_regret(-0.5, best, median), 1.0)

  def test_ties_at_the_optimum(self):
    self.assertEqual(regret.strict_regret(1.0, 1.0, 1.0), 0.0)
    self.assertEqual(regret.strict_regret(1.5, 1.0, 1.0), 1.0)
    self.assertEqual(regret.normalized_regret(1.0, 1.0, 1.0), 0.0)

  def test_jax_arrays_match_numpy(self):
    found = np.array([2.2, 2.4, 2.9])
    np.testing.assert_allclose(regret.strict_regret(jnp.asarray(found), 2.2, 2.5),
                               regret.strict_regret(found, 2.2, 2.5), rtol=1e-6)
    np.testing.assert_allclose(regret.strict_regret(found, 2.2, 2.5), [0, 2 / 3, 1])


if __name__ == "__main__":
  absltest.main()
