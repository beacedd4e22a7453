"""Tests of trajectory simulation (autollm_jax/trajectories.py) on the synthetic task."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from autollm_jax import evaluation
from autollm_jax import experiments
from autollm_jax import protocol
from autollm_jax import trajectories
from autollm_jax.agents import base

MAX_ROWS = 3


class BestCheapRun(base.Agent):
  """Proposes the best cheap run it observes (nearest fidelity) and records what it saw."""

  def __init__(self):
    self.seen: list[base.Observation] = []

  def propose(self, obs, history, rng):
    del rng
    self.seen.append(obs)
    cheap = base.nearest_fidelity(obs)
    order = np.argsort(cheap.y)
    return base.Proposal(cheap.configs[order[min(len(history), len(order) - 1)]])


class TrajectoriesTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.table = evaluation.synthetic_table(num_fidelities=3)
    train = [e for e in experiments.curate([cls.table]) if e.split == "train"]
    cls.experiment = dataclasses.replace(train[0], budget=2)

  @parameterized.parameters(True, False)
  def test_agent_sees_the_prompt_or_every_cheap_run(self, sees_prompt):
    agent = BestCheapRun()
    episode = trajectories.play(agent, self.experiment, self.table, 0, MAX_ROWS, sees_prompt)
    shown = {f: rows for f, rows, _ in
             protocol.shown_context(self.table, self.experiment, MAX_ROWS)}
    self.assertLen(agent.seen, 2)
    for cheap, f in zip(agent.seen[0].context, sorted(self.experiment.context_fidelities)):
      rows = self.experiment.context_rows[
          self.table.fidelity_index[self.experiment.context_rows] == f]
      expected = shown[f] if sees_prompt else rows
      self.assertLen(shown[f], MAX_ROWS)
      self.assertGreater(len(rows), MAX_ROWS)
      np.testing.assert_array_equal(np.sort(cheap.y),
                                    np.sort(self.table.outcomes[expected, 0]))
    self.assertEqual(episode.text.count(protocol.EXECUTE_END), 2)
    self.assertTrue(episode.text.startswith(
        protocol.render_prompt(self.table, self.experiment, MAX_ROWS)))


if __name__ == "__main__":
  absltest.main()
