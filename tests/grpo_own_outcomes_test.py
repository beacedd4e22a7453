"""Tests for the grpo_own table file and its seed summary."""

import pathlib

import numpy as np
from absl.testing import absltest

from autollm_jax.grpo_own import outcomes
from autollm_jax.grpo_own import sweep


def _rows(policy, sft, accuracies):
  """Rows of one configuration per entry of `accuracies` (one accuracy per seed)."""
  rows = []
  for c, per_seed in enumerate(accuracies):
    for seed, acc in enumerate(per_seed):
      rows.append({"policy": policy, "policy_params": 100.0, "learning_rate": 1e-3 * (c + 1),
                   "kl_coef": 0.01, "temperature": 1.0, "clip_eps": 0.2, "group_size": 4.0,
                   "seed": float(seed), "heldout_accuracy": acc, "heldout_pass1": acc / 2,
                   "sft_accuracy": sft, "final_reward": 0.5})
  return rows


class OutcomesTest(absltest.TestCase):

  def test_csv_round_trip(self):
    rows = _rows("xs", 0.4, [[0.5, 0.52], [0.1, 0.12]])
    path = pathlib.Path(self.create_tempdir().full_path) / "sub" / "outcomes.csv"
    outcomes.write_csv(path, rows)
    self.assertEqual(path.read_text().splitlines()[0], ",".join(outcomes.COLUMNS))
    self.assertEqual(outcomes.read_csv(path), rows)

  def test_by_config_orders_seeds(self):
    rows = _rows("xs", 0.4, [[0.5, 0.52]])[::-1]
    [(key, values)] = outcomes.by_config(rows).items()
    self.assertEqual(key[0], "xs")
    self.assertLen(key, 1 + len(sweep.PARAM_NAMES))
    np.testing.assert_array_equal(values, [0.5, 0.52])
    np.testing.assert_array_equal(list(outcomes.by_config(rows, "heldout_pass1").values())[0],
                                  [0.25, 0.26])

  def test_seed_summary(self):
    rows = (_rows("xs", 0.4, [[0.50, 0.52, 0.54], [0.40, 0.42, 0.38], [0.0, 0.02, 0.01]])
            + _rows("s", 0.5, [[0.5, 0.5, 0.5]] * 3))
    summary = outcomes.seed_summary(rows)
    self.assertEqual(list(summary), ["xs", "s"])
    xs = summary["xs"]
    self.assertEqual((xs["configs"], xs["seeds"], xs["sft"]), (3, 3, 0.4))
    self.assertAlmostEqual(xs["seed_std"], 0.02)
    self.assertEqual(xs["mean"], {"min": 0.01, "median": 0.4, "max": 0.52})
    self.assertEqual((xs["improved"], xs["collapsed"]), (1, 1))
    self.assertEqual((summary["s"]["seed_std"], summary["s"]["improved"]), (0.0, 0))


if __name__ == "__main__":
  absltest.main()
