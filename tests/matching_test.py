"""Tests for nearest-candidate matching on each parameter's own scale."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax import matching
from autollm_jax.gym.table import Param

PARAMS = (Param("lr", "log"), Param("ratio", "linear"), Param("bias", "categorical", (0, 1)))
CANDIDATES = np.array([[1e-4, 0.0, 0], [1e-2, 0.0, 1], [1e-3, 1.0, 1], [1e-3, 0.5, 0]])


def brute_force(query):
  """Independent reference: distances written out per parameter."""
  lo_lr, hi_lr = np.log10(1e-4), np.log10(1e-2)
  best, best_d = None, np.inf
  for i, (lr, ratio, bias) in enumerate(CANDIDATES):
    d = ((np.log10(query[0]) - np.log10(lr)) / (hi_lr - lo_lr)) ** 2
    d += (query[1] - ratio) ** 2
    d += float(query[2] != bias)
    if d < best_d:
      best, best_d = i, d
  return best


class MatchingTest(absltest.TestCase):

  def test_log_scale_decides(self):
    t = matching.feature_transform(PARAMS, CANDIDATES)
    f = matching.features(CANDIDATES, t)
    # 3e-3 is nearer 1e-2 than 1e-4 on a log axis
    q = matching.features(np.array([3e-3, 0.0, 1]), t)
    self.assertEqual(matching.nearest(f, q, t), 1)

  def test_random_queries_match_brute_force_on_host_and_device(self):
    t = matching.feature_transform(PARAMS, CANDIDATES)
    f = matching.features(CANDIDATES, t)
    rng = np.random.default_rng(0)
    queries = np.stack([10 ** rng.uniform(-5, -1, 500), rng.uniform(-0.5, 1.5, 500),
                        rng.integers(0, 2, 500)], axis=1)
    device = jax.jit(jax.vmap(lambda q: matching.nearest(
        jnp.asarray(f), matching.features(q, jnp.asarray(t), jnp), jnp.asarray(t), xp=jnp)))(
            jnp.asarray(queries))
    for q, d in zip(queries, np.asarray(device)):
      expected = brute_force(q)
      self.assertEqual(matching.nearest(f, matching.features(q, t), t), expected)
      self.assertEqual(d, expected)

  def test_not_run_skips_run_candidates_until_all_have_run(self):
    np.testing.assert_array_equal(matching.not_run(3, [2, None, 0]), [False, True, False])
    np.testing.assert_array_equal(matching.not_run(3, [0, 1, 2, 1]), [True, True, True])
    np.testing.assert_array_equal(matching.not_run(2, []), [True, True])

  def test_invalid_candidates_are_never_chosen(self):
    t = matching.feature_transform(PARAMS, CANDIDATES)
    f = matching.features(CANDIDATES, t)
    q = matching.features(CANDIDATES[1], t)
    self.assertEqual(matching.nearest(f, q, t, valid=np.array([1, 0, 1, 1], bool)), 2)

  def test_clip_query_keeps_categoricals_and_clamps_numeric_features(self):
    t = matching.feature_transform(PARAMS, CANDIDATES)
    hi = matching.features(CANDIDATES, t).max(axis=0)
    q = matching.features(np.array([1e9, -3.0, 1]), t)  # far above and below the range
    np.testing.assert_allclose(matching.clip_query(q, hi, t), [1.0, 0.0, 1.0])
    got = matching.clip_query(jnp.asarray(q), jnp.asarray(hi), jnp.asarray(t), jnp)
    np.testing.assert_allclose(np.asarray(got), [1.0, 0.0, 1.0])


if __name__ == "__main__":
  absltest.main()
