"""Tests for the on-device multi-turn rollout: it agrees with the host reference environment
and with a full forward pass over its own buffers."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from absl.testing import absltest
from flax import nnx

from autollm_jax import env as env_lib
from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax import rollout
from autollm_jax import sampler as sampler_lib
from autollm_jax import sp_tokenizer
from autollm_jax.evaluation import synthetic_table
from autollm_jax import experiments as experiments_lib
from autollm_jax.model import config as model_config
from autollm_jax.model import transformer
from autollm_jax.training import losses


def _runs(flags: np.ndarray) -> list[tuple[bool, int, int]]:
  """(flag, start, end) of each maximal run of equal values in a bool[L] array."""
  edges = np.flatnonzero(np.diff(flags.astype(np.int8))) + 1
  bounds = [0, *edges.tolist(), len(flags)]
  return [(bool(flags[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class RolloutTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    table = synthetic_table(num_fidelities=3)
    cls.tables = {table.name: table}
    exps = experiments_lib.curate([table], seed=0)
    # The crop has fewer values of its cropped parameter than the task.
    cls.experiments = [e for e in exps if e.split == "test"][:1] + [
        e for e in exps if e.split == "train"][:1] + [e for e in exps if "crop" in e.name][:1]
    prompts = [protocol.render_prompt(table, e, 3) for e in cls.experiments]
    turn = protocol.render_turn("the lr moved", table.param_names, [1e-3, 256.0])
    fb = protocol.render_feedback("loss", 2.5, 2.5, 2)
    cls.tok = sp_tokenizer.train_sentencepiece(prompts * 4 + [turn + fb] * 8, vocab_size=400)
    cls.env_params = env_lib.build_env_params(cls.tables, cls.experiments, cls.tok)
    cls.config = model_config.get_config(
        "scratch_1m", vocab_size=cls.tok.vocab_size, embed_dim=32, num_layers=2, num_heads=2,
        num_kv_heads=1, head_dim=16, mlp_dim=64)
    cls.graphdef, cls.params = nnx.split(transformer.create_model(cls.config, 0))
    cls.prompts = [[cls.tok.bos_id] + cls.tok.encode(p) for p in prompts]
    # Two episodes per experiment, sampled hot so that some actions parse and some do not.
    ids = np.repeat(np.arange(len(cls.experiments)), 2)
    tokens, mask = rollout.prompt_batch([cls.prompts[i] for i in ids], cls.tok.pad_id)
    run = rollout.jit_rollout(cls.graphdef, cls.config,
                              rollout.RolloutConfig(turn_tokens=24, temperature=1.5),
                              rollout.stop_token(cls.tok))
    cls.ids = ids
    cls.result = jax.device_get(run(cls.params, cls.env_params, jnp.asarray(ids), tokens, mask,
                                    jax.random.key(3)))

  def test_buffers_replay_in_the_reference_env(self):
    r = self.result
    for row, e in enumerate(self.ids):
      experiment = self.experiments[e]
      ref = reference_env.ReferenceEnv(self.tables[experiment.task], experiment)
      real = r.tokens[row][r.input_mask[row]].tolist()
      agent = r.loss_mask[row][r.input_mask[row]] > 0
      # Split the episode into its turns (agent runs) and the feedback after each.
      pieces = [(k, real[a:b]) for k, a, b in _runs(agent)]
      turns = [p for k, p in pieces if k]
      feedbacks = [p for k, p in pieces if not k][1:]  # the first non-agent piece: the prompt
      self.assertLen(turns, experiment.budget)
      total = 0.0
      for t, (turn, fb) in enumerate(zip(turns, feedbacks)):
        self.assertEqual(len(turn), r.turn_lengths[row, t])
        text, reward, _ = ref.step(self.tok.decode(turn))
        total += reward
        self.assertEqual(self.tok.decode(fb), text)
        self.assertEqual(r.history[row, t], -1 if ref.history[-1] is None else ref.history[-1])
      self.assertAlmostEqual(float(r.rewards[row]), total, places=5)
    self.assertTrue(np.any(r.history >= 0), "no action parsed at all: the check is vacuous")
    self.assertTrue(np.any(r.history[:, 0] == -1), "every action parsed: the check is weak")

  def test_logprobs_match_a_full_forward_pass(self):
    r = self.result
    positions = transformer.default_positions(jnp.asarray(r.input_mask))
    logits, _ = transformer.forward(self.graphdef, self.params, jnp.asarray(r.tokens),
                                    positions, jnp.asarray(r.input_mask))
    logp = np.asarray(losses.token_log_probs(logits, jnp.asarray(r.tokens)))
    np.testing.assert_allclose(logp * r.loss_mask, r.logprobs, atol=2e-3)
    self.assertGreater(r.loss_mask.sum(), 50)

  def test_think_limit_makes_every_action_parse(self):
    tokens, mask = rollout.prompt_batch([self.prompts[i] for i in self.ids], self.tok.pad_id)
    run = rollout.jit_rollout(
        self.graphdef, self.config,
        rollout.RolloutConfig(turn_tokens=60, temperature=1.5, think_tokens=8),
        rollout.stop_token(self.tok))
    r = jax.device_get(run(self.params, self.env_params, jnp.asarray(self.ids), tokens, mask,
                           jax.random.key(3)))
    budgets = np.array([self.experiments[i].budget for i in self.ids])
    within = np.arange(r.history.shape[1]) < budgets[:, None]
    self.assertTrue(np.all(r.history[within] >= 0), r.history)
    self.assertTrue(np.all(r.history[~within] == -1))
    self.assertTrue(np.all(r.turn_lengths[within] <= 60))
    # Each value is one of its own experiment's candidates' (fewer than the task's values).
    table = self.tables[self.experiments[0].task]
    own = [protocol.param_values(table.configs[e.candidate_rows]) for e in self.experiments]
    union = [set().union(*values) for values in zip(*own)]
    self.assertTrue(any(set(v) < u for values in own for v, u in zip(values, union)))
    for row, e in enumerate(self.ids):
      text = self.tok.decode(r.tokens[row][r.input_mask[row]].tolist())
      actions = re.findall(r"<execute>.*? </execute>", text)
      self.assertLen(actions, budgets[row])
      for action in actions:
        for value, allowed in zip(protocol.parse_action(action, table.param_names), own[e]):
          self.assertIn(value, allowed)

  def test_choice_mask_leaves_out_the_forced_tokens(self):
    r = self.result
    self.assertTrue(np.all(r.choice_mask <= r.loss_mask))
    table = self.tables[self.experiments[0].task]
    checked = 0
    for row in range(len(self.ids)):
      # In a turn whose action was written, the parameter names are forced and the values
      # (several candidates) are chosen.
      for is_agent, start, end in _runs(r.loss_mask[row] > 0):
        if not is_agent:
          continue
        turn = r.tokens[row, start:end].tolist()
        text = self.tok.decode(turn)
        if not re.search(r"<execute>.*</execute>", text):
          continue
        forced = [t for t, c in zip(turn, r.choice_mask[row, start:end]) if c == 0]
        forced_text = "".join(self.tok.id_to_piece(t) for t in forced)
        for name in table.param_names:
          self.assertIn(name, forced_text, text)
        self.assertGreater(r.choice_mask[row, start:end].sum(), 0, text)
        checked += 1
    self.assertGreater(checked, 0, "no action was written: the check is vacuous")

  def test_prompt_bucket_padding_does_not_change_an_episode(self):
    prompts = [self.prompts[i] for i in self.ids]
    tokens, mask = rollout.prompt_batch(prompts, self.tok.pad_id)
    longest = max(map(len, prompts))
    self.assertEqual(tokens.shape[1] % rollout.PROMPT_LENGTH_MULTIPLE, 0)
    self.assertGreater(tokens.shape[1], longest)  # else the comparison below is vacuous
    exact_tokens, exact_mask = sampler_lib.left_pad(prompts, self.tok.pad_id)
    self.assertEqual(exact_tokens.shape[1], longest)
    np.testing.assert_array_equal(tokens[:, -longest:], exact_tokens)
    run = rollout.jit_rollout(self.graphdef, self.config,
                              rollout.RolloutConfig(turn_tokens=60, temperature=0.0,
                                                    think_tokens=8),
                              rollout.stop_token(self.tok))
    ids = jnp.asarray(self.ids)
    bucketed, exact = (jax.device_get(run(self.params, self.env_params, ids, t, m,
                                          jax.random.key(0)))
                       for t, m in ((tokens, mask), (exact_tokens, exact_mask)))
    np.testing.assert_array_equal(bucketed.history, exact.history)
    np.testing.assert_array_equal(bucketed.turn_lengths, exact.turn_lengths)
    for row in range(len(self.ids)):
      np.testing.assert_array_equal(bucketed.tokens[row][bucketed.input_mask[row]],
                                    exact.tokens[row][exact.input_mask[row]])

  def test_rollouts_of_one_graph_share_their_compilation(self):
    config = rollout.RolloutConfig(turn_tokens=60, temperature=1.0, think_tokens=12)
    first, second = (rollout.jit_rollout(self.graphdef, self.config, config,
                                         rollout.stop_token(self.tok)) for _ in range(2))
    tokens, mask = rollout.prompt_batch(self.prompts[:1], self.tok.pad_id)
    args = (self.env_params, jnp.zeros(1, jnp.int32), tokens, mask, jax.random.key(0))
    compiled = rollout._jitted_rollout._cache_size()  # pylint: disable=protected-access
    first(self.params, *args)
    self.assertEqual(rollout._jitted_rollout._cache_size(), compiled + 1)  # pylint: disable=protected-access
    second(jax.tree_util.tree_map(lambda x: x * 0.5, self.params), *args)
    self.assertEqual(rollout._jitted_rollout._cache_size(), compiled + 1)  # pylint: disable=protected-access

  def test_turn_too_short_for_the_action_is_an_error(self):
    tokens, mask = rollout.prompt_batch(self.prompts[:1], self.tok.pad_id)
    run = rollout.jit_rollout(self.graphdef, self.config,
                              rollout.RolloutConfig(turn_tokens=12, think_tokens=8),
                              rollout.stop_token(self.tok))
    with self.assertRaisesRegex(ValueError, "leaves no room for the action"):
      run(self.params, self.env_params, jnp.zeros(1, jnp.int32), tokens, mask,
          jax.random.key(0))


if __name__ == "__main__":
  absltest.main()
