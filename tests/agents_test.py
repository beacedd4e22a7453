"""Tests of the agents (autollm_jax/agents/) on a synthetic task whose optimum is known."""

import dataclasses
import re

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from autollm_jax import agents
from autollm_jax import evaluation
from autollm_jax import experiments
from autollm_jax import protocol
from autollm_jax.agents import base
from autollm_jax.agents import fsbo
from autollm_jax.agents import gp_model
from autollm_jax.agents import teacher as teacher_lib

BUDGET = 5
# Agents made small for tests: FSBO with few steps, as many of meta-training as of fine-tuning,
# so that both run the same compiled step.
SMALL = {"fsbo": lambda: fsbo.FSBO(meta_steps=50, finetune_steps=50)}


class AgentsTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.table = evaluation.synthetic_table(num_fidelities=5)
    cls.tables = {cls.table.name: cls.table}
    cls.exps = experiments.curate([cls.table])
    cls.test = [e for e in cls.exps if e.split == "test"][0]
    cls.obs = base.Observation.from_experiment(cls.test, cls.table)
    cls.random = np.mean([evaluation.run_episode(agents.make("random"), cls.test, cls.table,
                                                 s).strict_regret for s in range(10)], axis=0)

  def test_observation_hides_the_target(self):
    self.assertLen(self.obs.context, 4)
    for c in self.obs.context:
      self.assertLess(c.scale[0], self.obs.target_scale[0])
    self.assertEqual(self.obs.num_candidates, len(self.test.candidate_rows))
    self.assertFalse(hasattr(self.obs, "outcomes"))

  @parameterized.parameters("random", "topk", "teacher", "gp", "fsbo", "tpe")
  def test_finds_the_known_optimum_region(self, name):
    agent = SMALL[name]() if name in SMALL else agents.make(name)
    agent.fit([e for e in self.exps if e.split == "train"], self.tables)
    episode = evaluation.run_episode(agent, self.test, self.table, seed=0, budget=BUDGET)
    self.assertLen(episode.candidates, BUDGET)
    self.assertLen(set(episode.candidates.tolist()), BUDGET)  # no candidate run twice
    self.assertTrue(np.all(np.diff(episode.strict_regret) <= 0))
    if name != "random":  # every informed agent beats random search at the full budget
      self.assertLess(episode.strict_regret[-1], self.random[-1])

  def test_topk_starts_from_the_best_cheap_configuration(self):
    proposal = agents.make("topk").propose(self.obs, [], np.random.default_rng(0))
    cheap = base.nearest_fidelity(self.obs)
    best = cheap.configs[np.argmin(cheap.y)]
    np.testing.assert_allclose(proposal.config, self.obs.candidates[self.obs.match(best)])
    self.assertEqual(cheap.name, self.table.fidelity_names[3])

  def test_teacher_extrapolates_the_moving_optimum(self):
    teacher = agents.make("teacher")
    proposal = teacher.propose(self.obs, [], np.random.default_rng(0))
    c_lr, c_bs = evaluation.optimum(self.obs.target_scale[0])
    # Within one grid step (0.25 decades of lr, a factor 2 of bs) of the true optimum, which
    # lies beyond every cheap fidelity's.
    self.assertLessEqual(abs(np.log10(proposal.config[0]) - c_lr), 0.25 + 1e-9)
    self.assertLessEqual(abs(np.log2(proposal.config[1]) - c_bs / np.log10(2)), 1.0 + 1e-9)
    self.assertIn("optimal lr", proposal.reasoning)
    # The synthetic optimum moves as lr ~ N^-0.5 (on a grid of 0.25-decade steps).
    slope = float(re.search(r"lr ~ N\^([-+][0-9.]+)", proposal.reasoning).group(1))
    self.assertBetween(slope, -0.65, -0.35)
    episode = evaluation.run_episode(teacher, self.test, self.table, seed=0)
    self.assertLess(episode.strict_regret[0], self.random[0])
    self.assertLess(episode.strict_regret[0], 0.1)

  def test_brief_teacher_writes_only_its_conclusion_and_proposes_the_same(self):
    full = agents.make("teacher").propose(self.obs, [], np.random.default_rng(0))
    brief = teacher_lib.Teacher("brief").propose(self.obs, [], np.random.default_rng(0))
    np.testing.assert_array_equal(brief.config, full.config)
    predicted = re.fullmatch(rf"Predicted \w+=({protocol.OUTCOME_RE})\.", brief.reasoning)
    self.assertIsNotNone(predicted, brief.reasoning)
    self.assertTrue(full.reasoning.endswith(f"(predicted {self.obs.metric.name}="
                                            f"{predicted.group(1)})."),
                    full.reasoning)
    self.assertLess(len(brief.reasoning), len(full.reasoning) / 3)
    silent = teacher_lib.Teacher("none").propose(self.obs, [], np.random.default_rng(0))
    np.testing.assert_array_equal(silent.config, full.config)
    self.assertEqual(silent.reasoning, "")
    with self.assertRaisesRegex(ValueError, "use 'full', 'brief' or 'none'"):
      teacher_lib.Teacher("short")

  def test_trend_fit_recovers_a_line(self):
    x = np.array([[-2.0], [-1.0], [-0.5]])
    slopes, at_target = teacher_lib.trend_fit(x, 3.0 + 0.7 * x[:, 0])
    np.testing.assert_allclose(slopes, [0.7], atol=1e-3)
    self.assertAlmostEqual(float(at_target), 3.0, places=2)

  def test_teacher_ranking_puts_predicted_best_first_and_skips_tried(self):
    teacher = agents.make("teacher")
    order, predicted, _ = teacher.rank(self.obs, [])
    self.assertTrue(np.all(np.diff(predicted) >= 0))
    first = order[0]
    trial = base.Trial(int(first), self.obs.candidates[first], 3.0, 3.0)
    order2, _, text = teacher.rank(self.obs, [trial])
    self.assertNotIn(first, order2)
    self.assertIn("After 1 trial", text)

  def test_teacher_shares_the_prior_across_episodes_of_an_experiment(self):
    teacher = agents.make("teacher")
    again = base.Observation.from_experiment(dataclasses.replace(self.test, budget=2),
                                             self.table)
    self.assertIsNot(again, self.obs)
    self.assertIs(teacher.prior(again), teacher.prior(self.obs))
    other = next(e for e in self.exps if e.split == "train")
    self.assertIsNot(teacher.prior(base.Observation.from_experiment(other, self.table)),
                     teacher.prior(self.obs))

  @parameterized.parameters("matern52", "rbf")
  def test_gp_gradient_matches_finite_differences(self, kind):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(20, 3))
    y = np.sin(3 * x.sum(1))
    v = rng.normal(size=5) * 0.5
    _, grad = gp_model._objective(v, x, y, kind)
    eps = 1e-6
    numeric = [(gp_model._objective(v + d, x, y, kind)[0]
                - gp_model._objective(v - d, x, y, kind)[0]) / (2 * eps)
               for d in np.eye(5) * eps]
    np.testing.assert_allclose(grad, numeric, atol=1e-7)

  def test_gp_fit_interpolates_a_smooth_function(self):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 2))
    xq = rng.uniform(size=(10, 2))

    def f(z):
      return np.sin(3 * z[:, 0]) + z[:, 1] ** 2

    mean, std = gp_model.fit(x, f(x)).predict(xq)
    np.testing.assert_allclose(mean, f(xq), atol=0.05)
    self.assertTrue(np.all(std < 0.1))

  def test_registry(self):
    self.assertEqual(set(agents.names()) >= {"random", "topk", "teacher", "gp", "fsbo", "tpe"},
                     True)
    with self.assertRaisesRegex(KeyError, "unknown agent"):
      agents.make("oracle")
    agents.register("checkpointed_random", lambda checkpoint: agents.make("random"),
                    takes_checkpoint=True)
    with self.assertRaisesRegex(ValueError, "needs a checkpoint"):
      agents.make("checkpointed_random")
    self.assertEqual(agents.make("checkpointed_random", "/tmp/x").name, "checkpointed_random")
    with self.assertRaisesRegex(ValueError, "already registered"):
      agents.register("random", agents.make)


if __name__ == "__main__":
  absltest.main()
