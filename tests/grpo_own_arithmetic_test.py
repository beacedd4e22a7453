"""Tests for grpo_own's arithmetic task: its format, its checker and its seeded problems."""

import numpy as np
from absl.testing import absltest

from autollm_jax.grpo_own import arithmetic


class ArithmeticTest(absltest.TestCase):

  def test_answers_are_four_characters(self):
    self.assertEqual(arithmetic.answer_text(42, "-", 917), "-875")
    self.assertEqual(arithmetic.answer_text(999, "+", 999), "1998")
    self.assertEqual(arithmetic.answer_text(100, "-", 99), "0001")
    self.assertEqual(arithmetic.answer_text(5, "-", 5), "0000")
    self.assertEqual(arithmetic.prompt_text(42, "-", 917), "042-917=")

  def test_checker(self):
    self.assertTrue(arithmetic.is_correct("042-917=", "-875"))
    self.assertFalse(arithmetic.is_correct("042-917=", "-874"))
    self.assertFalse(arithmetic.is_correct("042-917=", "875"))
    self.assertTrue(arithmetic.is_correct("500+500=", "1000"))
    with self.assertRaisesRegex(ValueError, "'42-917=' is not an arithmetic problem"):
      arithmetic.is_correct("42-917=", "-875")
    with self.assertRaisesRegex(ValueError, "not an arithmetic problem"):
      arithmetic.is_correct("042*917=", "-875")

  def test_problems_are_seeded_disjoint_and_correct(self):
    train, test = arithmetic.problems(3, 500, 100)
    self.assertEqual(train.shape, (500, arithmetic.SEQ_LEN))
    self.assertEqual(test.shape, (100, arithmetic.SEQ_LEN))
    again, _ = arithmetic.problems(3, 500, 100)
    np.testing.assert_array_equal(train, again)
    other, _ = arithmetic.problems(4, 500, 100)
    self.assertFalse(np.array_equal(train, other))
    prompts = {arithmetic.decode(r[:arithmetic.PROMPT_LEN]) for r in train}
    self.assertLen(prompts, 500)
    self.assertFalse(prompts & {arithmetic.decode(r[:arithmetic.PROMPT_LEN]) for r in test})
    for row in np.concatenate([train, test]):
      text = arithmetic.decode(row)
      self.assertTrue(arithmetic.is_correct(text[:arithmetic.PROMPT_LEN],
                                            text[arithmetic.PROMPT_LEN:]), text)
    ops = {arithmetic.decode(r[3:4]) for r in train}
    self.assertEqual(ops, {"+", "-"})

  def test_token_rewards_agree_with_the_checker(self):
    train, _ = arithmetic.problems(0, 200, 0)
    rng = np.random.default_rng(0)
    answers = train[:, arithmetic.PROMPT_LEN:].copy()
    wrong = rng.random(len(answers)) < 0.5
    answers[wrong, rng.integers(0, arithmetic.ANSWER_LEN, wrong.sum())] = rng.integers(
        0, len(arithmetic.VOCAB), wrong.sum())
    got = arithmetic.rewards(answers, train[:, arithmetic.PROMPT_LEN:])
    want = [float(arithmetic.is_correct(arithmetic.decode(p[:arithmetic.PROMPT_LEN]),
                                        arithmetic.decode(a)))
            for p, a in zip(train, answers)]
    np.testing.assert_array_equal(got, want)
    self.assertBetween(float(np.mean(got)), 0.3, 0.8)

  def test_encode_decode(self):
    np.testing.assert_array_equal(arithmetic.encode("12+="), [1, 2, 10, 12])
    self.assertEqual(arithmetic.decode(arithmetic.encode("042-917=-875")), "042-917=-875")
    self.assertEqual(arithmetic.decode([15]), "?")


if __name__ == "__main__":
  absltest.main()
