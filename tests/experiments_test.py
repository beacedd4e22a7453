"""Tests of experiment curation (autollm_jax/experiments.py)."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from autollm_jax import evaluation
from autollm_jax import experiments
from autollm_jax.gym import tasks


def _split(exps, split):
  return [e for e in exps if e.split == split]


class SyntheticCurationTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.table = evaluation.synthetic_table(num_fidelities=5)
    self.exps = experiments.curate([self.table], seed=0)

  def test_test_split_targets_the_largest_fidelity_with_full_budget(self):
    test = _split(self.exps, "test")
    self.assertLen(test, 1)
    self.assertEqual(test[0].target_fidelity, 4)
    self.assertEqual(test[0].context_fidelities, (0, 1, 2, 3))
    self.assertEqual(test[0].budget, experiments.MAX_BUDGET)

  def test_train_never_sees_a_test_fidelity(self):
    test_fids = {e.target_fidelity for e in _split(self.exps, "test")}
    train = _split(self.exps, "train")
    self.assertNotEmpty(train)
    for e in train:
      self.assertNotIn(e.target_fidelity, test_fids)
      self.assertFalse(set(e.context_fidelities) & test_fids)
      self.assertFalse(set(self.table.fidelity_index[e.context_rows]) & test_fids)

  def test_candidates_are_at_the_target_and_context_is_cheaper(self):
    for e in self.exps:
      np.testing.assert_array_equal(self.table.fidelity_index[e.candidate_rows],
                                    e.target_fidelity)
      np.testing.assert_array_equal(
          np.unique(self.table.fidelity_index[e.context_rows]), e.context_fidelities)
      for f in e.context_fidelities:
        self.assertLess(self.table.fidelity_scale[f, 0],
                        self.table.fidelity_scale[e.target_fidelity, 0])
      self.assertBetween(e.budget, 1, experiments.MAX_BUDGET)
      self.assertGreaterEqual(len(e.candidate_rows), experiments.MIN_CANDIDATES)

  def test_augmentation_shifts_candidates_and_contexts(self):
    train = _split(self.exps, "train")
    by_target = {}
    for e in train:
      by_target.setdefault(e.target_fidelity, []).append(e)
    full_size = len(self.table.rows(3))
    sizes = {len(e.candidate_rows) for e in by_target[3]}
    contexts = {e.context_fidelities for e in by_target[3]}
    self.assertIn(full_size, sizes)
    self.assertTrue(any(s < full_size for s in sizes))
    self.assertGreater(len(contexts), 1)

  def test_deterministic_from_seed(self):
    again = experiments.curate([self.table], seed=0)
    other = experiments.curate([self.table], seed=1)
    self.assertEqual([e.name for e in again], [e.name for e in self.exps])
    for a, b in zip(again, self.exps):
      np.testing.assert_array_equal(a.candidate_rows, b.candidate_rows)
      self.assertEqual(a.budget, b.budget)
    self.assertNotEqual(
        [(e.name, tuple(e.candidate_rows), e.budget) for e in other],
        [(e.name, tuple(e.candidate_rows), e.budget) for e in self.exps])

  def test_more_candidate_subsets_add_train_experiments_only(self):
    more = experiments.curate([self.table], seed=0, candidate_subsets=7)
    self.assertEqual([e.name for e in _split(more, "test")],
                     [e.name for e in _split(self.exps, "test")])
    tags = lambda exps: {e.name.rsplit("/", 1)[1] for e in _split(exps, "train")}
    self.assertIn("cand6-random", tags(more))
    self.assertNotIn("cand6-random", tags(self.exps))
    self.assertTrue(any(t.startswith("cand5-crop-") for t in tags(more)))
    self.assertGreater(len(_split(more, "train")), len(_split(self.exps, "train")))
    names = [e.name for e in more]
    self.assertLen(set(names), len(names))

  def test_row_subsets_show_part_of_every_cheap_fidelity(self):
    more = experiments.curate([self.table], seed=0, row_subsets=2)
    self.assertEqual([e.name for e in _split(more, "test")],
                     [e.name for e in _split(self.exps, "test")])
    subsets = [e for e in _split(more, "train") if e.name.endswith(("/rows0", "/rows1"))]
    self.assertNotEmpty(subsets)
    for e in subsets:
      full = np.flatnonzero(np.isin(self.table.fidelity_index, e.context_fidelities))
      self.assertTrue(np.all(np.isin(e.context_rows, full)))
      self.assertLess(len(e.context_rows), len(full))
      for f in e.context_fidelities:
        shown = np.sum(self.table.fidelity_index[e.context_rows] == f)
        self.assertGreaterEqual(shown, min(experiments.MIN_ROWS,
                                           np.sum(self.table.fidelity_index == f)))
    names = [e.name for e in more]
    self.assertLen(set(names), len(names))

  def test_at_budgets_plays_each_experiment_at_each_budget(self):
    train = _split(self.exps, "train")[:3]
    played = experiments.at_budgets(train, (5, 2))
    self.assertEqual([(e.name, e.budget) for e in played],
                     [(e.name, b) for e in train for b in (5, 2)])
    for e, p in zip([e for e in train for _ in range(2)], played):
      np.testing.assert_array_equal(p.candidate_rows, e.candidate_rows)
    self.assertEqual([e.budget for e in experiments.at_budgets(train, ())],
                     [e.budget for e in train])
    with self.assertRaisesRegex(ValueError, r"\[0, 6\] outside 1\.\.5"):
      experiments.at_budgets(train, (0, 3, 6))

  def test_names_are_unique(self):
    names = [e.name for e in self.exps]
    self.assertLen(set(names), len(names))

  def test_target_fidelity_argument(self):
    exps = experiments.curate([self.table], target_fidelity=self.table.fidelity_names[2])
    test = _split(exps, "test")
    self.assertEqual({e.target_fidelity for e in test}, {2})
    self.assertEqual(test[0].context_fidelities, (0, 1))
    for e in _split(exps, "train"):
      self.assertNotEqual(e.target_fidelity, 2)
      self.assertNotIn(2, e.context_fidelities)

  def test_target_without_cheaper_fidelity_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "no cheaper fidelity"):
      experiments.curate([self.table], target_fidelity=self.table.fidelity_names[0])

  def test_parameter_budgets_restrict_candidates(self):
    table = evaluation.synthetic_table(num_fidelities=4, param_counts=True)
    exps = experiments.curate([table])
    test = _split(exps, "test")
    self.assertEqual(sorted(e.budget_quantile for e in test),
                     list(experiments.TEST_BUDGET_QUANTILES))
    for e in exps:
      counts = table.aux[e.candidate_rows, 0]
      self.assertIsNotNone(e.param_budget)
      self.assertLessEqual(counts.max(), e.param_budget)
    for e in test:
      self.assertLess(len(e.candidate_rows), len(table.rows(e.target_fidelity)))

  def test_describe_counts(self):
    text = experiments.describe(self.exps)
    n_train = len(_split(self.exps, "train"))
    self.assertIn(f"total: {n_train} train, 1 test", text)
    self.assertIn(_split(self.exps, "test")[0].name, text)


class RealTaskCurationTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tables = {n: tasks.load_task(n) for n in tasks.TASK_NAMES}
    cls.exps = experiments.curate(list(cls.tables.values()), seed=0)

  def test_steplaw_test_targets(self):
    table = self.tables["pretrain_steplaw"]
    targets = {table.fidelity_names[e.target_fidelity]
               for e in _split(self.exps, "test") if e.task == table.name}
    self.assertEqual(targets, {"N=1.074e+09,D=2.000e+10", "N=1.074e+09,D=5.690e+10",
                               "N=5.369e+08,D=5.000e+10"})

  def test_no_test_fidelity_leaks_into_train(self):
    for name, table in self.tables.items():
      test_fids = {e.target_fidelity for e in _split(self.exps, "test") if e.task == name}
      for e in _split(self.exps, "train"):
        if e.task == name:
          self.assertNotIn(e.target_fidelity, test_fids, e.name)
          self.assertFalse(set(table.fidelity_index[e.context_rows]) & test_fids, e.name)

  def test_hwgpt_and_admire_targets_and_metrics(self):
    test = _split(self.exps, "test")
    hw = [e for e in test if e.task == "arch_hwgpt"]
    self.assertEqual({e.target_fidelity for e in hw}, {2})
    self.assertTrue(all(e.param_budget is not None for e in self.exps
                        if e.task == "arch_hwgpt"))
    admire = [e for e in test if e.task == "mixture_admire"]
    self.assertEqual({e.metric for e in admire}, set(experiments.AVERAGE_METRICS))
    self.assertEqual({e.target_fidelity for e in admire}, {2})
    self.assertEqual({e.context_fidelities for e in admire}, {(0, 1)})

  def test_grpo_own_tests_the_largest_policy(self):
    table = self.tables["grpo_own"]
    largest = int(np.argmax(table.fidelity_scale[:, 0]))
    exps = [e for e in self.exps if e.task == "grpo_own"]
    test = _split(exps, "test")
    self.assertEqual({(e.target_fidelity, e.metric) for e in test},
                     {(largest, "heldout_accuracy")})
    self.assertEqual(test[0].context_fidelities,
                     tuple(f for f in range(len(table.fidelity_names)) if f != largest))
    train = _split(exps, "train")
    self.assertNotEmpty(train)
    self.assertEqual({e.metric for e in train}, set(table.metric_names))
    self.assertTrue(all(e.target_fidelity != largest for e in train))


if __name__ == "__main__":
  absltest.main()
