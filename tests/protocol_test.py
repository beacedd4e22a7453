"""The text protocol: number formats, actions, feedback, row selection and prompts."""

import dataclasses
import re

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from autollm_jax import protocol
from autollm_jax.agents import base
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import Metric, Param, TaskTable


def _table() -> TaskTable:
  lr = 2.0 ** -np.arange(6, 12)
  configs = np.array([[a, b, c] for a in lr for b in (64.0, 256.0) for c in (0.0, 1.0)])
  n = len(configs)
  rng = np.random.default_rng(0)
  return TaskTable(
      name="toy", description="choose lr, bs and bias.", params=(
          Param("lr", "log"), Param("bs", "log"), Param("bias", "categorical", (0.0, 1.0))),
      metrics=(Metric("acc", "max"),), fidelity_names=("small", "large"),
      fidelity_scale_names=("N", "D"), fidelity_scale=np.array([[1e8, 2e9], [1.074e9, 2e10]]),
      configs=np.concatenate([configs, configs]),
      fidelity_index=np.repeat([0, 1], n).astype(np.int32),
      outcomes=rng.random((2 * n, 1)))


class FormatTest(parameterized.TestCase):

  @parameterized.parameters(
      (3.45e-4, "3.45e-04"), (0.0, "0.00e+00"), (1e-120, "0.00e+00"), (9.996, "1.00e+01"),
      (256, "2.56e+02"), (1.074e9, "1.07e+09"), (9.99e99, "9.99e+99"), (1, "1.00e+00"))
  def test_format_param(self, value, text):
    self.assertEqual(protocol.format_param(value), text)

  @parameterized.parameters(-1.0, 1e100, float("nan"), float("inf"))
  def test_format_param_rejects(self, value):
    with self.assertRaises(ValueError):
      protocol.format_param(value)

  def test_random_params_have_the_fixed_format_and_round_trip(self):
    rng = np.random.default_rng(0)
    for value in 10.0 ** rng.uniform(-99, 99.9, size=2000):
      text = protocol.format_param(value)
      self.assertLen(text, protocol.PARAM_WIDTH)
      self.assertRegex(text, f"^{protocol.PARAM_RE}$")
      self.assertAlmostEqual(float(text) / value, 1.0, delta=5e-3)

  @parameterized.parameters((2.22551, "2.2255e+00"), (-0.103, "-1.0300e-01"), (None, "none"),
                            (0.0, "0.0000e+00"))
  def test_format_outcome(self, value, text):
    self.assertEqual(protocol.format_outcome(value), text)
    if value is not None:
      self.assertRegex(text, f"^{protocol.OUTCOME_RE}$")


class TextTest(absltest.TestCase):

  def test_action_and_turn(self):
    self.assertEqual(protocol.render_action(["lr", "bs"], [1.38e-3, 256]),
                     "<execute> lr=1.38e-03 bs=2.56e+02 </execute>")
    self.assertEqual(protocol.render_turn("go", ["lr"], [1e-3]),
                     "<think> go </think> <execute> lr=1.00e-03 </execute>")
    with self.assertRaisesRegex(ValueError, "1 values for 2"):
      protocol.render_action(["lr", "bs"], [1e-3])

  def test_action_parts_surround_the_numbers(self):
    parts = protocol.action_parts(["lr", "bs"])
    self.assertEqual(parts, ("<execute> lr=", " bs=", " </execute>"))

  def test_feedback(self):
    self.assertEqual(protocol.render_feedback("loss", 2.2255, 2.2, 4),
                     "\n<obs> loss=2.2255e+00 best=2.2000e+00 left=4 </obs>\n")
    self.assertEqual(protocol.render_feedback("smooth loss", None, None, 0),
                     "\n<obs> smooth loss=none best=none left=0 </obs>\n")
    self.assertEqual("".join(protocol.feedback_parts("m")), "\n<obs> m= best= left= </obs>\n")
    with self.assertRaises(ValueError):
      protocol.render_feedback("loss", 1.0, 1.0, 10)


class SelectRowsTest(parameterized.TestCase):

  def test_all_rows_best_first_when_they_fit(self):
    y = np.array([3.0, 1.0, 2.0])
    rows, text = protocol.select_rows(y, 3)
    np.testing.assert_array_equal(rows, [1, 2, 0])
    self.assertEqual(text, "all 3 runs, best first")

  @parameterized.parameters(1, 2, 5, 8, 9)
  def test_best_then_spread_including_the_worst(self, max_rows):
    y = np.random.default_rng(max_rows).permutation(20).astype(float)
    rows, text = protocol.select_rows(y, max_rows)
    self.assertLen(rows, max_rows)
    self.assertLen(set(rows.tolist()), max_rows)
    n_best = (max_rows + 1) // 2
    np.testing.assert_array_equal(y[rows[:n_best]], np.arange(n_best))
    self.assertTrue(np.all(np.diff(y[rows]) > 0))
    if max_rows > n_best:
      self.assertEqual(y[rows[-1]], 19)
    self.assertIn(f"the best {n_best}", text)
    self.assertIn("of 20 runs", text)

  def test_rejects_no_rows(self):
    with self.assertRaises(ValueError):
      protocol.select_rows(np.zeros(3), 0)


class PromptTest(absltest.TestCase):

  def test_prompt_states_task_target_and_cheap_results(self):
    table = _table()
    experiment = Experiment(
        name="toy/large", task="toy", split="test", target_fidelity=1, context_fidelities=(0,),
        metric="acc", budget=3, candidate_rows=table.rows(1)[:10], context_rows=table.rows(0))
    prompt = protocol.render_prompt(table, experiment, max_rows=5)
    lines = prompt.split("\n")
    self.assertEqual(lines[-1], "")
    self.assertEqual(lines[0], "<task> toy: choose lr, bs and bias. Metric: acc, higher is "
                               "better.")
    self.assertTrue(lines[1].startswith("<target> fidelity large (N=1.07e+09 D=2.00e+10): 10 "
                                        "candidate configurations."))
    self.assertIn("lr (log) in [3.91e-03, 1.56e-02]", lines[1])
    self.assertIn("bias (categorical) one of {0.00e+00, 1.00e+00}", lines[1])
    self.assertTrue(lines[1].endswith("Budget: 3 trials."))
    self.assertEqual(lines[2], "<cheap> fidelity small (N=1.00e+08 D=2.00e+09): the best 3 and "
                               "2 spread over the other 21 of 24 runs, best first.")
    rows = lines[3:8]
    self.assertLen(rows, 5)
    named_by_scale = dataclasses.replace(table, fidelity_names=("N=1.000e+08,D=2.000e+09",
                                                                "N=1.074e+09,D=2.000e+10"))
    lines = protocol.render_prompt(named_by_scale, experiment, max_rows=5).split("\n")
    self.assertTrue(lines[1].startswith("<target> fidelity N=1.074e+09,D=2.000e+10: 10 "),
                    lines[1])  # the scale is written once
    self.assertTrue(lines[2].startswith("<cheap> fidelity N=1.000e+08,D=2.000e+09: the "))
    values = [float(re.search(r"acc=(\S+)", r).group(1)) for r in rows]
    self.assertEqual(values, sorted(values, reverse=True))
    self.assertAlmostEqual(values[0], table.outcomes_at(0).max(), places=4)
    for row in rows:
      self.assertRegex(row, rf"^lr={protocol.PARAM_RE} bs={protocol.PARAM_RE} "
                            rf"bias={protocol.PARAM_RE} acc={protocol.OUTCOME_RE}$")

  def test_under_a_parameter_budget_only_cheap_runs_within_its_quantile_are_shown(self):
    table = _table()
    n = len(table.rows(0))
    counts = np.tile(np.arange(n, dtype=np.float64), 2)  # parameter count of every row
    table = dataclasses.replace(table, aux_names=("n_params",), aux=counts[:, None])
    experiment = Experiment(
        name="toy/large/p25", task="toy", split="test", target_fidelity=1,
        context_fidelities=(0,), metric="acc", budget=3, candidate_rows=table.rows(1)[:7],
        context_rows=table.rows(0), param_budget=6.0, budget_quantile=0.25)
    lines = protocol.render_prompt(table, experiment, max_rows=10).split("\n")
    self.assertIn("Parameter-count cap: 6.00e+00.", lines[1])
    # Counts 0..23: the 25th percentile is 5.75, so rows 0..5 (six runs) are shown.
    self.assertEqual(lines[2], "<cheap> fidelity small (N=1.00e+08 D=2.00e+09): the runs at or "
                               "under its 25th percentile of parameter counts; all 6 runs, "
                               "best first.")
    shown = {tuple(float(v) for v in re.findall(r"=(\S+)", row)[:3]) for row in lines[3:9]}
    self.assertEqual(shown, {tuple(float(protocol.format_param(v)) for v in c)
                             for c in table.configs[:6]})
    self.assertEqual(lines[9], "")

  def test_observation_of_the_prompt_holds_the_runs_it_shows(self):
    table = _table()
    n = len(table.rows(0))
    counts = np.tile(np.arange(n, dtype=np.float64), 2)
    table = dataclasses.replace(table, aux_names=("n_params",), aux=counts[:, None])
    experiment = Experiment(
        name="toy/large/p50", task="toy", split="test", target_fidelity=1,
        context_fidelities=(0,), metric="acc", budget=3, candidate_rows=table.rows(1)[:7],
        context_rows=table.rows(0), param_budget=12.0, budget_quantile=0.5)
    full = base.Observation.from_experiment(experiment, table).context[0]
    # Counts 0..23: the median is 11.5, so rows 0..11 are within the budget.
    np.testing.assert_array_equal(full.in_budget, np.arange(n) < 12)
    seen = base.Observation.from_experiment(experiment, table, max_rows=4).context[0]
    lines = protocol.render_prompt(table, experiment, max_rows=4).split("\n")
    shown = [[float(v) for v in re.findall(r"=(\S+)", row)[:3]] for row in lines[3:7]]
    np.testing.assert_allclose(seen.configs, shown, rtol=5e-3)
    self.assertTrue(np.all(seen.aux["n_params"] < 12))
    self.assertTrue(np.all(seen.in_budget))
    self.assertEqual(lines[7], "")


if __name__ == "__main__":
  absltest.main()
