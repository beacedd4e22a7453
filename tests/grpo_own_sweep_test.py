"""Tests for the grpo_own sweep: its configurations, and a rerun of a slice of the committed
table (gym/grpo_own/) checked against the committed numbers within their seed noise."""

import dataclasses
import json

import numpy as np
from absl.testing import absltest

from autollm_jax.grpo_own import outcomes
from autollm_jax.grpo_own import policies
from autollm_jax.grpo_own import sweep
from autollm_jax.gym import data

TABLE_DIR = data.GYM_DIR / "grpo_own"
SLICE_CONFIGS = 2


class ConfigurationsTest(absltest.TestCase):

  def test_space_is_covered_and_seeded(self):
    configs = sweep.configurations(52, seed=0)
    self.assertEqual(set(configs), set(sweep.PARAM_NAMES))
    self.assertEqual(sorted(np.unique(configs["group_size"], return_counts=True)[1]),
                     [13, 13, 13, 13])
    for name, (scale, lo, hi) in sweep.SPACE.items():
      values = configs[name]
      self.assertBetween(values.min(), lo * 0.999, hi * 1.001)
      self.assertTrue(all(float(f"{v:.3g}") == v for v in values), name)
      unit = np.log(values / lo) / np.log(hi / lo) if scale == "log" else (values - lo) / (hi - lo)
      # Latin hypercube: one value in each of the 52 strata (up to rounding at the edges).
      self.assertGreaterEqual(len(np.unique(np.clip((unit * 52).astype(int), 0, 51))), 50)
    again = sweep.configurations(52, seed=0)
    for name in sweep.PARAM_NAMES:
      np.testing.assert_array_equal(configs[name], again[name])
    self.assertFalse(np.array_equal(configs["learning_rate"],
                                    sweep.configurations(52, seed=1)["learning_rate"]))

  def test_group_size_must_divide_the_minibatch(self):
    with self.assertRaisesRegex(ValueError, "group_size=6 must divide"):
      sweep.train_population(None, None, None, None, 6, sweep.Settings(), {}, np.zeros(1))


class CommittedTableTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.provenance = json.loads((TABLE_DIR / "provenance.json").read_text())
    cls.rows = outcomes.read_csv(TABLE_DIR / "outcomes.csv")
    settings = cls.provenance["settings"]
    cls.settings = sweep.Settings(**{**settings, "seeds": tuple(settings["seeds"])})

  def test_table_is_what_the_settings_describe(self):
    configs = sweep.configurations(self.settings.num_configs, self.settings.config_seed)
    policy_names = list(self.provenance["policies"])
    self.assertEqual(policy_names, list(policies.POLICIES))
    self.assertLen(self.rows, len(policy_names) * self.settings.num_configs
                   * len(self.settings.seeds))
    for policy in policy_names:
      keys = [k[1:] for k in outcomes.by_config(self.rows) if k[0] == policy]
      self.assertEqual(keys, list(zip(*(configs[n] for n in sweep.PARAM_NAMES))))
      recorded = self.provenance["policies"][policy]
      current = dataclasses.asdict(policies.POLICIES[policy])
      self.assertEqual(recorded, {k: v for k, v in current.items() if k in recorded})
      # Fields added to ModelConfig after the sweep ran sit at their defaults, which compute
      # what the sweep computed (attention "auto" is the einsum attention on its CPU).
      defaults = {f.name: f.default for f in dataclasses.fields(type(policies.POLICIES[policy]))}
      for name in set(current) - set(recorded):
        self.assertEqual(current[name], defaults[name], name)

  def test_rerun_of_a_slice_matches_within_seed_noise(self):
    """The smallest policy's warm start, then two configurations of one group size (one
    compile) with the committed seeds: the one that did best and the one that did worst."""
    policy = next(iter(policies.POLICIES))
    committed = {k[1:]: v for k, v in outcomes.by_config(self.rows).items() if k[0] == policy}
    group = max(sweep.GROUP_SIZES)
    keys = sorted((k for k in committed if k[-1] == group), key=lambda k: committed[k].mean())
    picked = [keys[-1], keys[0]]
    configs = {n: np.array([k[i] for k in picked]) for i, n in enumerate(sweep.PARAM_NAMES)}
    rows, info = sweep.run_fidelity(policy, self.settings, configs)
    fidelity = next(f for f in self.provenance["fidelities"] if f["policy"] == policy)
    self.assertAlmostEqual(info["sft_accuracy"], fidelity["sft_accuracy"], delta=0.05)
    rerun = outcomes.by_config([{"policy": policy, **r} for r in rows])
    seed_std = self.provenance["seed_summary"][policy]["seed_std"]
    n = len(self.settings.seeds)
    # Two means of n seeds each differ by sigma * sqrt(2 / n) on average; allow four times
    # that, and at least 0.03 (a run replayed on the same machine is exact).
    tolerance = max(4 * seed_std * np.sqrt(2 / n), 0.03)
    for key in picked:
      got = rerun[(policy, *key)]
      self.assertLen(got, n)
      self.assertAlmostEqual(got.mean(), committed[key].mean(), delta=tolerance, msg=str(key))
    self.assertGreater(rerun[(policy, *picked[0])].mean(),
                       rerun[(policy, *picked[1])].mean())


if __name__ == "__main__":
  absltest.main()
