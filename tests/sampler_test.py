"""Tests of the jitted sampler: greedy decoding, log-probs, stop tokens, grammar tables."""

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax import sampler as sampler_lib
from autollm_jax import token_fsm
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

CONFIG = config_lib.get_config("gemma3_270m", vocab_size=61, embed_dim=32, num_layers=2,
                               num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48,
                               sliding_window=4, global_every=2)
PAD = 0
PROMPTS = [[7, 8, 9, 10, 11], [12, 13]]


class SamplerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.graphdef, cls.params = nnx.split(transformer.create_model(CONFIG, seed=2))
    cls.sampler = sampler_lib.Sampler(cls.graphdef, CONFIG, pad_id=PAD)

  def reference_greedy(self, prompt, steps):
    """Greedy continuation and log-probs by repeated full forward passes."""
    ids, logprobs = list(prompt), []
    for _ in range(steps):
      logits, _ = transformer.forward(self.graphdef, self.params, jnp.array([ids]),
                                      jnp.arange(len(ids))[None])
      logp = jax.nn.log_softmax(logits[0, -1])
      ids.append(int(jnp.argmax(logp)))
      logprobs.append(float(logp[ids[-1]]))
    return ids[len(prompt):], logprobs

  def test_greedy_matches_full_forward(self):
    out = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(max_new_tokens=6))
    for row, prompt in enumerate(PROMPTS):
      tokens, logprobs = self.reference_greedy(prompt, 6)
      self.assertEqual(out.tokens[row].tolist(), tokens)
      np.testing.assert_allclose(out.logprobs[row], logprobs, atol=1e-4)
    self.assertEqual(out.lengths.tolist(), [6, 6])
    self.assertEqual(int(out.cache.index), 5 + 6 - 1)

  def test_stop_token_ends_a_sequence(self):
    tokens, _ = self.reference_greedy(PROMPTS[0], 3)
    stop = tokens[2]
    out = self.sampler(self.params, PROMPTS[:1], sampler_lib.SamplingParams(max_new_tokens=6),
                       stop_ids=[stop])
    first_stop = tokens.index(stop)
    self.assertEqual(int(out.lengths[0]), first_stop + 1)
    self.assertTrue(bool(out.done[0]))
    self.assertEqual(out.tokens[0, :first_stop + 1].tolist(), tokens[:first_stop + 1])
    self.assertTrue(np.all(np.asarray(out.tokens[0, first_stop + 1:]) == PAD))
    self.assertTrue(np.all(np.asarray(out.logprobs[0, first_stop + 1:]) == 0.0))

  def test_cache_continues_each_row_after_its_stop(self):
    greedy = self.reference_greedy(PROMPTS[0], 2)[0]
    stop = greedy[1]
    out = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(max_new_tokens=6),
                       stop_ids=[stop], cache_length=16)
    lengths = out.lengths.tolist()
    self.assertEqual(lengths[0], greedy.index(stop) + 1)
    self.assertEqual(lengths[1], 6)  # the other row runs on while row 0 is stopped
    # Feed each row's last token (never fed by decode) at its own position, then compare the
    # next-token logits with a full forward pass over prompt + continuation.
    last = out.tokens[jnp.arange(2), out.lengths - 1]
    position = jnp.array([len(p) + n - 1 for p, n in zip(PROMPTS, lengths)])
    model = nnx.merge(self.graphdef, self.params)
    logits, _ = model(last[:, None], position[:, None], None, out.cache)
    for row, prompt in enumerate(PROMPTS):
      ids = prompt + out.tokens[row, :lengths[row]].tolist()
      full, _ = transformer.forward(self.graphdef, self.params, jnp.array([ids]),
                                    jnp.arange(len(ids))[None])
      np.testing.assert_allclose(logits[row, 0], full[0, -1], atol=1e-4)

  @staticmethod
  def _two_state_fsm() -> token_fsm.TokenFSM:
    """State 0 allows {3, 4}; token 3 leads to state 1, which allows only {5}; 5 returns to 0."""
    rows = np.zeros((2, CONFIG.vocab_size), bool)
    rows[1, 4] = True
    return token_fsm.TokenFSM.from_edges([{3: 1}, {5: 0}], [1, 0], rows)

  def test_grammar_tables_constrain_sampling(self):
    fsm = self._two_state_fsm()
    allowed = {0: {3, 4}, 1: {5}}  # written out: the reference the sampler is checked against
    grammar = sampler_lib.Grammar(jax.tree.map(jnp.asarray, fsm))
    out = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(
        max_new_tokens=12, temperature=1.0), key=jax.random.key(5), grammar=grammar)
    for row, forced, final_state in zip(np.asarray(out.tokens), np.asarray(out.forced),
                                        np.asarray(out.grammar_state)):
      state = 0
      for token, was_forced in zip(row, forced):
        self.assertIn(token, allowed[state], f"token {token} in state {state}: {row}")
        self.assertEqual(was_forced, len(allowed[state]) == 1)
        state = {(0, 3): 1, (1, 5): 0}.get((state, int(token)), state)
      self.assertEqual(state, final_state)
    self.assertIn(3, np.asarray(out.tokens))  # the sampler does visit both states
    free = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(max_new_tokens=4))
    self.assertFalse(np.any(np.asarray(free.forced)))  # without a grammar nothing is forced
    self.assertEqual(out.grammar_state.shape, (2,))

  def test_live_states_restrict_each_row(self):
    # Row 0 may not enter state 1, so it writes only token 4.
    grammar = sampler_lib.Grammar(jax.tree.map(jnp.asarray, self._two_state_fsm()),
                                  live=jnp.array([[True, False], [True, True]]))
    out = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(
        max_new_tokens=12, temperature=1.0), key=jax.random.key(5), grammar=grammar)
    tokens = np.asarray(out.tokens)
    self.assertIn(3, tokens[1])
    np.testing.assert_array_equal(tokens[0], 4)

  def test_top_k_one_and_tiny_top_p_are_greedy(self):
    greedy = self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(max_new_tokens=5))
    for sampling in (sampler_lib.SamplingParams(max_new_tokens=5, temperature=1.0, top_k=1),
                     sampler_lib.SamplingParams(max_new_tokens=5, temperature=1.0,
                                                top_p=1e-6)):
      out = self.sampler(self.params, PROMPTS, sampling, key=jax.random.key(9))
      chex.assert_trees_all_equal(out.tokens, greedy.tokens)

  def test_temperature_sampling_follows_the_distribution(self):
    logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
    sampling = sampler_lib.SamplingParams(max_new_tokens=1, temperature=1.0)
    draws = jax.vmap(lambda k: sampler_lib.sample_logits(logits, k, sampling)[0])(
        jax.random.split(jax.random.key(0), 4000))
    np.testing.assert_allclose(np.bincount(np.asarray(draws), minlength=3) / 4000,
                               [0.7, 0.2, 0.1], atol=0.03)
    top_p = sampler_lib.SamplingParams(max_new_tokens=1, temperature=1.0, top_p=0.8)
    draws = jax.vmap(lambda k: sampler_lib.sample_logits(logits, k, top_p)[0])(
        jax.random.split(jax.random.key(1), 1000))
    self.assertEqual(set(np.asarray(draws).tolist()), {0, 1})

  def test_cache_too_small_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "cache_length"):
      self.sampler(self.params, PROMPTS, sampler_lib.SamplingParams(max_new_tokens=6),
                   cache_length=4)


if __name__ == "__main__":
  absltest.main()
