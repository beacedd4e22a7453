"""The plain-Python reference env on a task small enough to check by hand."""

from absl.testing import absltest
import numpy as np

from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import Metric, Param, TaskTable

# Candidates at the target (fidelity 1): lr x bias, loss below. Sorted losses: 2.0 (y*),
# 2.5, 3.0 (median 2.75), 7.0 (worst).
_CONFIGS = np.array([[1e-3, 0.0], [1e-2, 0.0], [1e-3, 1.0], [1e-2, 1.0]])
_LOSS = np.array([2.5, 7.0, 2.0, 3.0])


def _env(budget=3, **kw) -> reference_env.ReferenceEnv:
  table = TaskTable(
      name="tiny", description="choose lr and bias", params=(
          Param("lr", "log"), Param("bias", "categorical", (0.0, 1.0))),
      metrics=(Metric("loss", "min"),), fidelity_names=("cheap", "target"),
      fidelity_scale_names=("N",), fidelity_scale=np.array([[1e8], [1e9]]),
      configs=np.concatenate([_CONFIGS, _CONFIGS]),
      fidelity_index=np.repeat([0, 1], 4).astype(np.int32),
      outcomes=np.concatenate([_LOSS + 1, _LOSS])[:, None])
  experiment = Experiment(
      name="tiny/target", task="tiny", split="test", target_fidelity=1,
      context_fidelities=(0,), metric="loss", budget=budget,
      candidate_rows=np.arange(4, 8), context_rows=np.arange(4))
  return reference_env.ReferenceEnv(table, experiment, **kw)


def _turn(lr, bias) -> str:
  return protocol.render_turn("try", ["lr", "bias"], [lr, bias])


class ReferenceEnvTest(absltest.TestCase):

  def test_episode(self):
    env = _env()
    self.assertIn("<cheap> fidelity cheap", env.prompt())
    feedback, reward, done = env.step(_turn(1e-3, 0))
    self.assertEqual(feedback, "\n<obs> loss=2.5000e+00 best=2.5000e+00 left=2 </obs>\n")
    self.assertEqual((reward, done), (0.0, False))
    feedback, reward, done = env.step(_turn(1e-2, 1))
    self.assertEqual(feedback, "\n<obs> loss=3.0000e+00 best=2.5000e+00 left=1 </obs>\n")
    feedback, reward, done = env.step(_turn(1e-3, 1))
    self.assertEqual(feedback, "\n<obs> loss=2.0000e+00 best=2.0000e+00 left=0 </obs>\n")
    self.assertEqual((reward, done), (-0.0, True))
    self.assertEqual(env.history, [0, 3, 2])
    self.assertEqual(env.step(_turn(1e-3, 1)), ("", 0.0, True))

  def test_terminal_reward_is_minus_the_strict_regret(self):
    env = _env(budget=1)
    _, reward, _ = env.step(_turn(1e-3, 0))  # loss 2.5: (2.5 - 2) / (2.75 - 2)
    self.assertAlmostEqual(reward, -2 / 3)
    env = _env(budget=1, regret_kind="normalized")
    _, reward, _ = env.step(_turn(1e-3, 0))  # (2.5 - 2) / (7 - 2)
    self.assertAlmostEqual(reward, -0.1)

  def test_shaped_rewards_sum_to_the_terminal_one(self):
    env = _env(reward_mode="shaped")
    rewards = [env.step(_turn(*a))[1] for a in ((1e-2, 0), (1e-3, 0), (1e-3, 1))]
    self.assertAlmostEqual(rewards[0], -1.0)  # loss 7: strict regret 1
    self.assertAlmostEqual(rewards[1], 1 / 3)
    self.assertAlmostEqual(rewards[2], 2 / 3)
    self.assertAlmostEqual(sum(rewards), 0.0)

  def test_out_of_range_and_unknown_choices_map_to_the_nearest(self):
    env = _env()
    self.assertEqual(env.match(env.parse(_turn(9.99e99, 1))), 3)   # lr clipped to 1e-2
    self.assertEqual(env.match(env.parse(_turn(0.0, 1))), 2)       # lr clipped to 1e-3
    self.assertEqual(env.match(env.parse(_turn(2e-3, 0.5))), 0)    # bias matches neither
    np.testing.assert_allclose(env.distances(env.parse(_turn(1e-2, 0))), [1, 0, 2, 1])

  def test_a_repeated_action_runs_the_nearest_candidate_not_run_yet(self):
    env = _env(budget=6)
    # Distances from (1e-3, 0): [0, 1, 1, 2]; ties go to the lowest index.
    for _ in range(5):
      env.step(_turn(1e-3, 0))
    self.assertEqual(env.history, [0, 1, 2, 3, 0])  # all four run: all open again
    self.assertTrue(env.untried().all())

  def test_malformed_actions_use_a_trial_and_report_none(self):
    env = _env()
    for turn in ("<think> no action </think>", _turn(1e-3, 0).replace("bias=", "bios="),
                 _turn(1e-3, 0)[:-3], _turn(1e-3, 0).replace("1.00e-03", "1.0e-03")):
      self.assertIsNone(env.parse(turn), turn)
    feedback, reward, _ = env.step("<think> no action </think>")
    self.assertEqual(feedback, "\n<obs> loss=none best=none left=2 </obs>\n")
    self.assertEqual(env.history, [None])
    self.assertEqual(env.regret(), 1.0)

  def test_first_execute_counts(self):
    env = _env()
    turn = _turn(1e-3, 1) + " " + protocol.render_action(["lr", "bias"], [1e-2, 0])
    self.assertEqual(env.parse(turn), ("1.00e-03", "1.00e+00"))
    broken_first = "<execute> lr=oops " + protocol.render_action(["lr", "bias"], [1e-2, 0])
    self.assertIsNone(env.parse(broken_first))


if __name__ == "__main__":
  absltest.main()
