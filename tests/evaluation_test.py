"""Tests of the evaluation harness and report (autollm_jax/evaluation.py, report.py)."""

import json
import tempfile

from absl.testing import absltest
import numpy as np

from autollm_jax import agents
from autollm_jax import evaluation
from autollm_jax import experiments
from autollm_jax import report as report_lib

BUDGET = 3
SEEDS = [0, 1]


class EvaluationTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tables = [evaluation.synthetic_table("syn_a", num_fidelities=4, seed=0),
              evaluation.synthetic_table("syn_b", num_fidelities=5, seed=1)]
    cls.tables = {t.name: t for t in tables}
    cls.test = [e for e in experiments.curate(tables) if e.split == "test"]
    cls.report = evaluation.evaluate(
        {"random": agents.make("random"), "topk": agents.make("topk")}, cls.test, cls.tables,
        SEEDS, BUDGET)

  def test_schema(self):
    r = self.report
    self.assertEqual(r["budget"], BUDGET)
    self.assertEqual(r["seeds"], SEEDS)
    self.assertEqual(set(r["experiments"]), {e.name for e in self.test})
    for agent in ("random", "topk"):
      a = r["agents"][agent]
      self.assertEqual(set(a["per_task"]), {"syn_a", "syn_b"})
      for summary in [a["overall"], *a["per_task"].values()]:
        for key in evaluation.REGRETS:
          s = summary[key]
          for field in ("mean", "lo", "hi"):
            self.assertLen(s[field], BUDGET)
          self.assertTrue(np.all(np.array(s["lo"]) <= np.array(s["mean"]) + 1e-12))
          self.assertTrue(np.all(np.array(s["mean"]) <= np.array(s["hi"]) + 1e-12))
      for entry in a["per_experiment"].values():
        for key in evaluation.REGRETS:
          per_seed = np.array(entry[key + "_per_seed"])
          self.assertEqual(per_seed.shape, (len(SEEDS), BUDGET))
          self.assertTrue(np.all((per_seed >= 0) & (per_seed <= 1)))
          self.assertTrue(np.all(np.diff(per_seed, axis=1) <= 0))  # best so far
          np.testing.assert_allclose(entry[key], per_seed.mean(axis=0))
    overall = np.mean([r["agents"]["random"]["per_experiment"][e.name]["strict_regret"]
                       for e in self.test], axis=0)
    np.testing.assert_allclose(r["agents"]["random"]["overall"]["strict_regret"]["mean"],
                               overall)
    json.dumps(r)

  def test_episodes_are_deterministic_per_seed(self):
    e, table = self.test[0], self.tables[self.test[0].task]
    a = evaluation.run_episode(agents.make("random"), e, table, seed=3)
    b = evaluation.run_episode(agents.make("random"), e, table, seed=3)
    c = evaluation.run_episode(agents.make("random"), e, table, seed=4)
    np.testing.assert_array_equal(a.candidates, b.candidates)
    self.assertFalse(np.array_equal(a.candidates, c.candidates))

  def test_regret_zero_at_the_optimum(self):
    e, table = self.test[0], self.tables[self.test[0].task]
    y = table.outcomes[e.candidate_rows, 0]
    best = table.configs[e.candidate_rows[np.argmin(y)]]

    class Oracle(agents.Agent):

      def propose(self, obs, history, rng):
        return agents.base.Proposal(best * 1.0001)  # matched back to the optimum

    episode = evaluation.run_episode(Oracle(), e, table, seed=0, budget=3)
    np.testing.assert_array_equal(episode.strict_regret, [0.0, 0.0, 0.0])
    # The same proposal again runs the nearest candidates not run yet, as the envs do.
    self.assertEqual(episode.candidates[0], np.argmin(y))
    self.assertLen(set(episode.candidates), 3)

  def test_paired_difference_matches_a_hand_computed_t_interval(self):
    diff = evaluation.paired_difference(self.report, "topk", "random")
    per = self.report["agents"]
    d = np.array([np.subtract(per["topk"]["per_experiment"][e.name]["strict_regret"],
                              per["random"]["per_experiment"][e.name]["strict_regret"])
                  for e in self.test])
    n = len(d)
    t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}[n - 1]
    half = t975 * d.std(axis=0, ddof=1) / np.sqrt(n)
    np.testing.assert_allclose(diff["mean"], d.mean(axis=0))
    np.testing.assert_allclose(diff["lo"], np.clip(d.mean(axis=0) - half, -1, 1), atol=1e-3)
    np.testing.assert_allclose(diff["hi"], np.clip(d.mean(axis=0) + half, -1, 1), atol=1e-3)
    self.assertEqual(diff["experiments"], n)
    same = evaluation.paired_difference(self.report, "topk", "topk")
    np.testing.assert_array_equal(same["mean"], np.zeros(BUDGET))

  def test_write(self):
    with tempfile.TemporaryDirectory() as out:
      paths = report_lib.write(self.report, out)
      self.assertEqual(json.loads(paths["json"].read_text())["budget"], BUDGET)
      md = paths["md"].read_text()
      self.assertIn("| random |", md)
      self.assertIn("syn_b k=3", md)
      self.assertGreater(paths["png"].stat().st_size, 1000)
    compared = report_lib.add_comparisons(dict(self.report), [("topk", "random"),
                                                              ("sft", "random")])
    self.assertEqual([(c["agent"], c["baseline"]) for c in compared["comparisons"]],
                     [("topk", "random")])  # sft was not evaluated
    self.assertIn("| topk - random |", report_lib.markdown(compared))


if __name__ == "__main__":
  absltest.main()
