"""Tests for the teacher-forced imitation report: hand-counted matches, and the batched,
padded predictions against one unpadded forward pass per sequence."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from autollm_jax.model import config as model_config
from autollm_jax.model import transformer
from autollm_jax.training import imitation


class MatchStatsTest(absltest.TestCase):

  def test_tokens_turns_and_first_turns_are_counted(self):
    # Sequence a: prompt, a 3-token turn, feedback, a 2-token turn.
    tokens_a = np.array([1, 5, 6, 7, 8, 9, 4, 10, 11])
    mask_a = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1.0])
    # predicted[t] guesses tokens[t + 1]: the first turn right, the second's last token wrong.
    guess_a = np.array([5, 6, 7, 8, 0, 0, 10, 99, 0])
    # Sequence b: one 2-token turn whose first token is wrong.
    tokens_b = np.array([1, 5, 6, 7])
    mask_b = np.array([0, 0, 1, 1.0])
    guess_b = np.array([0, 99, 7, 0])
    stats = imitation.match_stats([guess_a, guess_b], [tokens_a, tokens_b], [mask_a, mask_b])
    self.assertAlmostEqual(stats["token_match"], 5 / 7)  # a: 3 + 1 of 5; b: 1 of 2
    self.assertAlmostEqual(stats["turn_match"], 1 / 3)
    self.assertAlmostEqual(stats["first_turn_match"], 1 / 2)

  def test_the_teachers_own_tokens_match_everywhere(self):
    tokens = np.array([1, 5, 6, 7, 8, 9, 4, 10, 11])
    mask = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1.0])
    stats = imitation.match_stats([np.append(tokens[1:], 0)], [tokens], [mask])
    self.assertEqual(stats, {"token_match": 1.0, "turn_match": 1.0, "first_turn_match": 1.0})


class PredictedTokensTest(absltest.TestCase):

  def test_batches_padded_by_length_give_each_sequences_own_argmax(self):
    config = model_config.get_config("scratch_1m", vocab_size=40, embed_dim=32, num_layers=2,
                                     num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64)
    graphdef, params = nnx.split(transformer.create_model(config, 0))
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 40, n).astype(np.int32) for n in (7, 130, 20, 3, 64)]
    predicted = imitation.predicted_tokens(graphdef, params, sequences, pad_id=0, batch_size=2)
    for tokens, guess in zip(sequences, predicted):
      mask = jnp.ones((1, len(tokens)), bool)
      logits, _ = transformer.forward(graphdef, params, jnp.asarray(tokens[None]),
                                      transformer.default_positions(mask))
      np.testing.assert_array_equal(guess, np.argmax(np.asarray(logits[0]), -1))


if __name__ == "__main__":
  absltest.main()
