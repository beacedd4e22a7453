"""Tests for landscape summaries: rank statistics against SciPy, and shared configurations."""

import numpy as np
from absl.testing import absltest

from autollm_jax.gym import landscape
from autollm_jax.gym import table as table_lib


def tiny_table():
  configs = np.array([[1e-3], [2e-3], [4e-3], [1e-3], [2e-3], [4e-3]])
  return table_lib.TaskTable(
      name="tiny", description="", params=(table_lib.Param("lr", "log"),),
      metrics=(table_lib.Metric("loss", "min"),), fidelity_names=("a", "b"),
      fidelity_scale_names=("N",), fidelity_scale=np.array([[1.0], [10.0]]), configs=configs,
      fidelity_index=np.array([0, 0, 0, 1, 1, 1], np.int32),
      outcomes=np.array([[3.0], [2.0], [2.5], [1.0], [1.5], [1.2]]), source_rows=6)


class LandscapeTest(absltest.TestCase):

  def test_spearman_of_a_constant_sample_is_nan(self):
    self.assertTrue(np.isnan(landscape.spearman(np.ones(5), np.arange(5.0))))
    self.assertAlmostEqual(landscape.spearman(np.arange(5.0), -np.arange(5.0) ** 3), -1.0)

  def test_neighbour_correlation_and_best(self):
    t = tiny_table()
    [(a, b, rho, n, how)] = landscape.neighbour_correlations(t)
    self.assertEqual((a, b, n, how), ("a", "b", 3, "value"))
    self.assertAlmostEqual(rho, -1.0)  # ranks (3, 1, 2) against (1, 3, 2)
    config, value = landscape.best_configuration(t, 1)
    self.assertEqual((config.tolist(), value), ([1e-3], 1.0))
    s = landscape.summary(t)
    self.assertEqual(s["best"]["a"], {"config": {"lr": 2e-3}, "loss": 2.0})
    self.assertEqual(s["metric_range"], [1.0, 3.0])


if __name__ == "__main__":
  absltest.main()
