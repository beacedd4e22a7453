"""Tests for length-bucketed batches: shapes, coverage of an epoch, determinism by step."""

import numpy as np
from absl.testing import absltest

from autollm_jax.training import batching


def make(seed=0):
  rng = np.random.default_rng(1)
  seqs = [rng.integers(1, 50, n) for n in rng.integers(5, 200, 23)]
  masks = [np.ones(len(s)) for s in seqs]
  return seqs, batching.BucketedBatches(seqs, masks, batch_size=4,
                                        lengths=batching.bucket_lengths(200, 64), pad_id=0,
                                        seed=seed)


class BatchingTest(absltest.TestCase):

  def test_bucket_lengths(self):
    self.assertEqual(batching.bucket_lengths(200, 64), (64, 128, 192, 256))
    self.assertEqual(batching.bucket_lengths(64, 64), (64,))

  def test_an_epoch_covers_every_sequence_once_with_its_loss(self):
    seqs, batches = make()
    seen = []
    for step in range(batches.batches_per_epoch):
      b = batches.batch(step)
      self.assertIn(b.tokens.shape[1], (64, 128, 192, 256))
      for row in range(4):
        if b.loss_mask[row].sum() > 0:
          n = int(b.input_mask[row].sum())
          seen.append(tuple(b.tokens[row, :n]))
          self.assertTrue(np.all(b.tokens[row, n:] == 0))
    self.assertCountEqual(seen, [tuple(s) for s in seqs])

  def test_batches_are_a_function_of_step_and_seed(self):
    _, a = make(seed=3)
    _, b = make(seed=3)
    _, c = make(seed=4)
    steps = [7, 0, 11, 7]
    for s in steps:
      np.testing.assert_array_equal(a.batch(s).tokens, b.batch(s).tokens)
    self.assertFalse(all(np.array_equal(a.batch(s).tokens, c.batch(s).tokens)
                         for s in range(a.batches_per_epoch)))

  def test_too_long_sequence_is_a_clear_error(self):
    with self.assertRaisesRegex(ValueError, "has 300 tokens, more than the largest bucket"):
      batching.BucketedBatches([np.ones(300)], [np.ones(300)], 1, (64, 128), 0)


if __name__ == "__main__":
  absltest.main()
