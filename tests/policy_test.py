"""Tests for the policy agent: it plays through the device env inside the evaluation harness,
proposes one turn at a time on the host, and loads from a self-describing checkpoint
directory."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from autollm_jax import agents
from autollm_jax import checkpoint
from autollm_jax import env as env_lib
from autollm_jax import evaluation
from autollm_jax import experiments as experiments_lib
from autollm_jax import protocol
from autollm_jax import rollout as rollout_lib
from autollm_jax import sp_tokenizer
from autollm_jax.agents import base
from autollm_jax.agents import policy
from autollm_jax.gym import tasks
from autollm_jax.model import config as model_config
from autollm_jax.model import transformer

SETTINGS = policy.PolicySettings(max_prompt_rows=3, max_context_fidelities=1, turn_tokens=60,
                                 think_tokens=8, temperature=1.5, batch_size=4)


class PolicyAgentTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    table = evaluation.synthetic_table(num_fidelities=3)
    cls.tables = {table.name: table}
    cls.test = [e for e in experiments_lib.curate([table], seed=0) if e.split == "test"]
    text = [protocol.render_prompt(table, e, 3) for e in cls.test]
    text.append(protocol.render_turn("so", table.param_names, [1e-3, 64.0]) +
                protocol.render_feedback("loss", 3.0, 3.0, 1))
    cls.tok = sp_tokenizer.train_sentencepiece(text * 6, vocab_size=400)
    cls.config = model_config.get_config(
        "scratch_1m", vocab_size=cls.tok.vocab_size, embed_dim=32, num_layers=2, num_heads=2,
        num_kv_heads=1, head_dim=16, mlp_dim=64)
    graphdef, cls.params = nnx.split(transformer.create_model(cls.config, 0))
    cls.agent = policy.PolicyAgent(graphdef, cls.params, cls.config, cls.tok, SETTINGS)

  def test_evaluate_scores_device_episodes(self):
    report = evaluation.evaluate({"policy": self.agent}, self.test, self.tables, [0, 1], 3)
    entry = report["agents"]["policy"]
    strict = np.array(entry["overall"]["strict_regret"]["mean"])
    self.assertLen(strict, 3)
    self.assertTrue(np.all((strict >= 0) & (strict <= 1)))
    self.assertTrue(np.all(np.diff(strict) <= 1e-12))  # best-so-far never gets worse
    for e in entry["per_experiment"].values():
      for candidates in e["candidates"]:
        self.assertLen(candidates, 3)

  def test_unparsed_trials_score_as_nothing_found(self):
    e = self.test[0]
    episode = evaluation.score_episode(e, self.tables[e.task], [-1, -1, 0])
    np.testing.assert_array_equal(episode.normalized_regret[:2], [1.0, 1.0])
    np.testing.assert_array_equal(episode.strict_regret[:2], [1.0, 1.0])
    self.assertLess(episode.normalized_regret[2], 1.0)

  def test_observation_problem_renders_the_experiments_prompt(self):
    table = tasks.load_task("arch_hwgpt")  # a parameter budget: the quantile rule counts
    exps = [e for e in experiments_lib.curate([table], seed=0) if e.split == "test"]
    for t, e in [(self.tables[e.task], e) for e in self.test] + [(table, e) for e in exps]:
      obs = base.Observation.from_experiment(e, t)
      own_table, own = policy.observation_problem(obs)
      self.assertEqual(protocol.render_prompt(own_table, own, 3), protocol.render_prompt(t, e, 3))
      self.assertTrue(np.all(np.isnan(own_table.outcomes[own.candidate_rows])))
      np.testing.assert_array_equal(own_table.configs[own.candidate_rows], obs.candidates)

  def test_propose_on_the_host_is_the_device_episode_greedy(self):
    greedy = policy.PolicyAgent(self.agent.graphdef, self.params, self.config, self.tok,
                                dataclasses.replace(SETTINGS, temperature=0.0))
    played = greedy.play(self.test, self.tables, [0], 3)
    rng = np.random.default_rng(0)
    for e in self.test:
      obs = base.Observation.from_experiment(dataclasses.replace(e, budget=3), self.tables[e.task])
      proposal = greedy.propose(obs, [], rng)
      self.assertIn(protocol.EXECUTE, proposal.reasoning)
      self.assertEqual(obs.match(proposal.config), played[(e.name, 0)][0])

  def test_propose_with_its_own_first_turn_is_the_device_episode_s_second_trial(self):
    greedy = policy.PolicyAgent(self.agent.graphdef, self.params, self.config, self.tok,
                                dataclasses.replace(SETTINGS, temperature=0.0))
    e = dataclasses.replace(self.test[0], budget=3)
    table = self.tables[e.task]
    shown = policy.prompt_experiment(e, table, SETTINGS)
    env_params = jax.device_put(env_lib.build_env_params(self.tables, [shown], self.tok))
    prompt = greedy.prompt_tokens(self.tables, [shown])[0]
    tokens, mask = rollout_lib.prompt_batch([prompt], self.tok.pad_id)
    played = jax.device_get(greedy._rollout(self.params, env_params, jnp.zeros(1, jnp.int32),
                                            tokens, mask, jax.random.key(0)))
    first_turn = self.tok.decode(
        played.tokens[0, len(prompt):len(prompt) + played.turn_lengths[0, 0]].tolist())
    obs = base.Observation.from_experiment(e, table)
    c1 = int(played.history[0, 0])
    outcome = float(table.outcomes[e.candidate_rows[c1], table.metric_column(e.metric)])
    told = [base.Trial(c1, obs.candidates[c1], outcome, obs.metric.sign() * outcome)]
    proposal = greedy.propose(obs, told, np.random.default_rng(0), [first_turn])
    self.assertEqual(obs.match(proposal.config, exclude=[c1]), played.history[0, 1])

  def test_propose_reads_the_told_trials_and_stops_at_the_budget(self):
    e = self.test[0]
    obs = base.Observation.from_experiment(dataclasses.replace(e, budget=3), self.tables[e.task])
    told = [base.Trial(i, obs.candidates[i], 3.0 + i, 3.0 + i) for i in (0, 5)]
    rng = np.random.default_rng(1)
    proposal = self.agent.propose(obs, told, rng)
    self.assertLen(proposal.config, len(obs.params))
    self.assertTrue(np.all(np.isfinite(proposal.config)))
    with self.assertRaisesRegex(ValueError, "all 3 trials of the budget are told"):
      self.agent.propose(obs, told + [told[0]], rng)

  def test_loads_from_a_checkpoint_directory(self):
    directory = self.create_tempdir().full_path
    manager = checkpoint.CheckpointManager(directory)
    manager.save(7, self.params, None, self.config, self.tok.to_blob())
    manager.close()
    with self.assertRaisesRegex(checkpoint.CheckpointError, "policy.json is missing"):
      agents.make("policy", checkpoint=directory)
    # A policy.json written before the trained tasks were recorded reads as "not recorded".
    legacy = dataclasses.asdict(SETTINGS)
    del legacy["tasks"]
    (pathlib.Path(directory) / policy.SETTINGS_FILE).write_text(json.dumps(legacy))
    self.assertEqual(policy.PolicySettings.load(directory), SETTINGS)
    settings = dataclasses.replace(SETTINGS, tasks=(self.test[0].task,))
    settings.save(directory)
    loaded = agents.make("policy", checkpoint=directory)
    self.assertEqual(loaded.settings, settings)
    self.assertEqual(loaded.tokenizer.to_blob(), self.tok.to_blob())
    a = loaded.play(self.test, self.tables, [0], 3)
    b = self.agent.play(self.test, self.tables, [0], 3)
    for key in b:
      np.testing.assert_array_equal(a[key], b[key])


if __name__ == "__main__":
  absltest.main()
