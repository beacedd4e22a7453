"""How closely a distilled policy reproduces the teacher's turns (its training episodes or others).

Teacher forcing: at every agent token the policy reads the teacher's episode up to that token,
and its most likely next token is compared with the teacher's. A turn (a maximal run of agent
tokens: the reasoning and the action) is reproduced when every one of its tokens is. The
first turn of an episode is counted apart: it is the policy's whole answer at budget 1. SFT's
loss is a mean over agent tokens, most of them forced by the protocol's format, so a low loss
can hide actions the policy gets wrong.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax.model import transformer
from autollm_jax.training import batching


def match_stats(predicted: Sequence[np.ndarray], sequences: Sequence[np.ndarray],
                loss_masks: Sequence[np.ndarray]) -> dict[str, float]:
  """Token, turn and first-turn match rates of predictions against the teacher's tokens.

  Args:
    predicted: per sequence, int[T] the policy's most likely token after each position
      (predicted[t] is its guess for sequences[t + 1]; the last entry is unused).
    sequences: per sequence, int[T] the teacher's episode.
    loss_masks: per sequence, float[T], 1 on the agent's tokens (mask[t] weighs token t).
  Returns:
    {"token_match": the fraction of agent tokens predicted, "turn_match": the fraction of
    turns predicted at every token, "first_turn_match": the same over each episode's first
    turn}.
  """
  tokens_hit = tokens_all = turns_hit = turns_all = firsts_hit = firsts_all = 0
  for guess, tokens, mask in zip(predicted, sequences, loss_masks):
    agent = np.flatnonzero(np.asarray(mask[1:]) > 0) + 1
    hit = np.asarray(guess)[agent - 1] == np.asarray(tokens)[agent]
    tokens_hit += int(hit.sum())
    tokens_all += len(agent)
    # A new turn starts wherever an agent token does not follow the previous one.
    turn_of = np.cumsum(np.diff(agent, prepend=-1) > 1) - 1
    turn_hit = np.ones(turn_of[-1] + 1 if len(agent) else 0, bool)
    np.logical_and.at(turn_hit, turn_of, hit)
    turns_hit += int(turn_hit.sum())
    turns_all += len(turn_hit)
    if len(turn_hit):
      firsts_hit += int(turn_hit[0])
      firsts_all += 1
  return {"token_match": tokens_hit / max(tokens_all, 1),
          "turn_match": turns_hit / max(turns_all, 1),
          "first_turn_match": firsts_hit / max(firsts_all, 1)}


def predicted_tokens(graphdef: nnx.GraphDef, params: nnx.State,
                     sequences: Sequence[np.ndarray], pad_id: int, batch_size: int = 8
                     ) -> list[np.ndarray]:
  """Per sequence, int32[T] the policy's most likely token after each of its positions.

  Sequences go through the model `batch_size` at a time, in order of length, right-padded to
  `batching.bucket_lengths` (a few shapes compile).
  """

  @jax.jit
  def argmax(params, tokens, input_mask):
    positions = transformer.default_positions(input_mask)
    logits, _ = transformer.forward(graphdef, params, tokens, positions, input_mask)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  lengths = np.asarray(batching.bucket_lengths(max(len(s) for s in sequences)))
  order = np.argsort([len(s) for s in sequences], kind="stable")
  out: list[np.ndarray] = [np.zeros(0, np.int32)] * len(sequences)
  for start in range(0, len(order), batch_size):
    ids = order[start:start + batch_size]
    width = int(lengths[np.searchsorted(lengths, len(sequences[ids[-1]]))])
    tokens = np.full((len(ids), width), pad_id, np.int32)
    input_mask = np.zeros((len(ids), width), bool)
    for row, i in enumerate(ids):
      tokens[row, :len(sequences[i])] = sequences[i]
      input_mask[row, :len(sequences[i])] = True
    guesses = np.asarray(argmax(params, tokens, input_mask))
    for row, i in enumerate(ids):
      out[i] = guesses[row, :len(sequences[i])]
  return out
