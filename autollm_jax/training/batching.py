"""Length-bucketed batches of token sequences, a pure function of the step (so a resumed run
sees the same batches as an uninterrupted one).

Sequences are grouped into buckets by length (the smallest bucket length that holds them), so
padding stays small and only a few shapes get compiled. Each epoch shuffles, from the seed and
the epoch number, the order of the batches and of the sequences within each bucket.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Batch:
  """One batch, right-padded.

  tokens: int32[B, T]; loss_mask: float32[B, T] (1 on tokens whose prediction is trained:
  mask[t] weighs the prediction of tokens[t] from tokens[:t]); input_mask: bool[B, T].
  """

  tokens: np.ndarray
  loss_mask: np.ndarray
  input_mask: np.ndarray


def bucket_lengths(max_len: int, step: int = 128) -> tuple[int, ...]:
  """Multiples of `step` up to the first at or past `max_len` (padding stays under `step`
  tokens per sequence; each length used compiles the train step once)."""
  return tuple(range(step, max_len + step, step))


class BucketedBatches:
  """Batches of `batch_size` sequences of similar length, indexed by step."""

  def __init__(self, sequences: Sequence[np.ndarray], loss_masks: Sequence[np.ndarray],
               batch_size: int, lengths: Sequence[int], pad_id: int, seed: int = 0):
    """
    Args:
      sequences: token ids, one int array per sequence.
      loss_masks: per sequence, a 0/1 array of the same length.
      batch_size: sequences per batch (a bucket's last, partial batch is filled by repeating
        earlier sequences of that bucket with a zero loss mask).
      lengths: the bucket lengths, ascending; the last must hold the longest sequence.
      pad_id: the padding token id.
      seed: fixes the shuffling of every epoch.
    """
    longest = max(len(s) for s in sequences)
    if longest > lengths[-1]:
      raise ValueError(f"a sequence has {longest} tokens, more than the largest bucket "
                       f"({lengths[-1]}); raise the config's max_seq_len")
    self._sequences = [np.asarray(s, np.int32) for s in sequences]
    self._masks = [np.asarray(m, np.float32) for m in loss_masks]
    self._batch_size = batch_size
    self._pad_id = pad_id
    self._seed = seed
    bucket_of = np.searchsorted(np.asarray(lengths), [len(s) for s in sequences])
    self._buckets = [(length, np.flatnonzero(bucket_of == b))
                     for b, length in enumerate(lengths) if np.any(bucket_of == b)]
    self.batches_per_epoch = sum(-(-len(ids) // batch_size) for _, ids in self._buckets)
    self._plan = (-1, [])

  def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng([self._seed, epoch])
    plan = []
    for length, ids in self._buckets:
      ids = rng.permutation(ids)
      for start in range(0, len(ids), self._batch_size):
        chunk = ids[start:start + self._batch_size]
        weight = np.ones(self._batch_size, np.float32)
        if len(chunk) < self._batch_size:
          weight[len(chunk):] = 0.0
          chunk = np.resize(chunk, self._batch_size)
        plan.append((length, chunk, weight))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]

  def batch(self, step: int) -> Batch:
    """The batch of a global step (epochs follow one another)."""
    epoch, index = divmod(step, self.batches_per_epoch)
    if self._plan[0] != epoch:
      self._plan = (epoch, self._epoch_plan(epoch))
    length, ids, weight = self._plan[1][index]
    tokens = np.full((self._batch_size, length), self._pad_id, np.int32)
    loss_mask = np.zeros((self._batch_size, length), np.float32)
    input_mask = np.zeros((self._batch_size, length), bool)
    for row, (i, w) in enumerate(zip(ids, weight)):
      n = len(self._sequences[i])
      tokens[row, :n] = self._sequences[i]
      loss_mask[row, :n] = self._masks[i] * w
      input_mask[row, :n] = True
    return Batch(tokens, loss_mask, input_mask)
