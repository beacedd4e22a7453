"""Tests for grpo_own's policies: sizes, the fixed-length sampler, accuracy, the warm start."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from autollm_jax.grpo_own import arithmetic
from autollm_jax.grpo_own import policies
from autollm_jax.model import transformer


def _policy(name="xs", seed=0):
  return nnx.split(transformer.create_model(policies.POLICIES[name], seed))


class PoliciesTest(absltest.TestCase):

  def test_sizes_span_ten_times(self):
    counts = [transformer.param_count(_policy(n)[1]) for n in policies.POLICIES]
    self.assertEqual(counts, sorted(counts))
    self.assertGreaterEqual(counts[-1] / counts[0], 10.0)

  def test_sampler_log_probs_match_a_full_forward(self):
    graphdef, params = _policy()
    train, _ = arithmetic.problems(0, 16, 0)
    prompts = jnp.asarray(train[:, :arithmetic.PROMPT_LEN])
    answers, logp = policies.sample_answers(graphdef, params, prompts, jax.random.key(0),
                                            jnp.ones(()))
    self.assertEqual(answers.shape, (16, arithmetic.ANSWER_LEN))
    full = policies.answer_log_probs(graphdef, params,
                                     jnp.concatenate([prompts, answers], axis=1))
    np.testing.assert_allclose(full[:, arithmetic.PROMPT_LEN:], logp, atol=1e-5)
    mask = policies.answer_mask(16)
    self.assertEqual(float(mask[:, arithmetic.PROMPT_LEN:].min()), 1.0)
    self.assertEqual(float(mask[:, :arithmetic.PROMPT_LEN].max()), 0.0)

  def test_temperature_zero_is_greedy_and_high_temperature_varies(self):
    graphdef, params = _policy()
    prompts = jnp.asarray(arithmetic.problems(0, 64, 0)[0][:, :arithmetic.PROMPT_LEN])
    greedy = [policies.sample_answers(graphdef, params, prompts, jax.random.key(k),
                                      jnp.zeros(()))[0] for k in (0, 1)]
    np.testing.assert_array_equal(greedy[0], greedy[1])
    hot = [policies.sample_answers(graphdef, params, prompts, jax.random.key(k),
                                   jnp.asarray(2.0))[0] for k in (0, 1)]
    self.assertFalse(np.array_equal(hot[0], hot[1]))

  def test_accuracy_counts_exact_answers(self):
    graphdef, params = _policy()
    _, test = arithmetic.problems(0, 0, 32)
    greedy, _ = policies.sample_answers(graphdef, params,
                                        jnp.asarray(test[:, :arithmetic.PROMPT_LEN]),
                                        jax.random.key(0), jnp.zeros(()))
    rigged = test.copy()
    rigged[:8, arithmetic.PROMPT_LEN:] = greedy[:8]  # the policy "knows" 8 of 32 answers
    rigged[8:, arithmetic.PROMPT_LEN] = (greedy[8:, 0] + 1) % len(arithmetic.VOCAB)
    self.assertAlmostEqual(float(policies.accuracy(graphdef, params, jnp.asarray(rigged))),
                           0.25)

  def test_warm_start_stops_at_its_target_or_its_step_limit(self):
    train, test = arithmetic.problems(0, 2000, 64)
    config = policies.POLICIES["xs"]
    _, params, info = policies.warm_start(config, train, test, seed=0, target_accuracy=0.0,
                                          max_steps=100, check_every=50)
    self.assertEqual(info["steps"], 50)
    self.assertEqual(info["n_params"], transformer.param_count(params))
    graphdef, params, info = policies.warm_start(config, train, test, seed=0,
                                                 target_accuracy=1.0, max_steps=100,
                                                 check_every=50)
    self.assertEqual(info["steps"], 100)
    self.assertBetween(info["accuracy"], 0.0, 1.0)

    def characters_right(params):
      answers, _ = policies.sample_answers(graphdef, params,
                                           jnp.asarray(test[:, :arithmetic.PROMPT_LEN]),
                                           jax.random.key(0), jnp.zeros(()))
      return float(np.mean(np.asarray(answers) == test[:, arithmetic.PROMPT_LEN:]))

    # 100 supervised steps learn the answer format and leading digits: far above chance.
    self.assertGreater(characters_right(params), 0.25)
    self.assertLess(characters_right(_policy()[1]), 0.2)


if __name__ == "__main__":
  absltest.main()
