"""The verifiable task of grpo_own: three-digit addition and subtraction, one token a character.

A problem is `a+b=` or `a-b=` with 0 <= a, b <= 999, its operands zero-padded to three digits
(`042-917=`); the answer is four characters, a zero-padded non-negative number (`1335`) or a
minus sign and three digits (`-875`). Every sequence is PROMPT_LEN + ANSWER_LEN tokens, so
sampling, scoring and checking need no padding. An answer is correct only if every character
matches: the reward is 1 or 0.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Array, Int

VOCAB = "0123456789+-="
VOCAB_SIZE = 16  # len(VOCAB) rounded up; ids 13..15 are never used
PROMPT_LEN = 8
ANSWER_LEN = 4
SEQ_LEN = PROMPT_LEN + ANSWER_LEN
_OPS = "+-"
_SPACE = len(_OPS) * 1000 * 1000  # every (op, a, b)


def answer_text(a: int, op: str, b: int) -> str:
  """The exact answer of `a op b` in the task's four-character format."""
  value = a + b if op == "+" else a - b
  return f"-{-value:03d}" if value < 0 else f"{value:04d}"


def prompt_text(a: int, op: str, b: int) -> str:
  return f"{a:03d}{op}{b:03d}="


def is_correct(prompt: str, completion: str) -> bool:
  """The checker: whether `completion` is the exact answer of the problem `prompt`.

  Args:
    prompt: a problem as written by `prompt_text`, e.g. "042-917=".
    completion: the model's answer characters.
  Raises:
    ValueError: `prompt` is not a problem of this task.
  """
  if len(prompt) != PROMPT_LEN or prompt[3] not in _OPS or prompt[-1] != "=" or not (
      prompt[:3].isdigit() and prompt[4:7].isdigit()):
    raise ValueError(f"{prompt!r} is not an arithmetic problem of the form 'ddd+ddd='")
  return completion == answer_text(int(prompt[:3]), prompt[3], int(prompt[4:7]))


def encode(text: str) -> np.ndarray:
  """int32[len(text)] token ids of task characters."""
  return np.array([VOCAB.index(c) for c in text], np.int32)


def decode(ids) -> str:
  """Characters of token ids; an id outside the vocabulary reads as '?'."""
  return "".join(VOCAB[i] if i < len(VOCAB) else "?" for i in np.asarray(ids).tolist())


def problems(seed: int, num_train: int, num_test: int
             ) -> tuple[Int[np.ndarray, "n L"], Int[np.ndarray, "m L"]]:
  """Disjoint train and held-out problems, drawn uniformly without replacement from `seed`.

  Args:
    seed: the numpy seed that fixes both sets.
    num_train, num_test: how many problems in each.
  Returns:
    (int32[num_train, SEQ_LEN], int32[num_test, SEQ_LEN]) token ids of problem and answer.
  """
  codes = np.random.default_rng(seed).choice(_SPACE, num_train + num_test, replace=False)
  ops, rest = np.divmod(codes, 1000 * 1000)
  a, b = np.divmod(rest, 1000)
  rows = np.stack([encode(prompt_text(int(x), _OPS[o], int(y)) + answer_text(int(x), _OPS[o],
                                                                              int(y)))
                   for o, x, y in zip(ops, a, b)])
  return rows[:num_train], rows[num_train:]


def rewards(answers: Int[Array, "B A"], targets: Int[Array, "B A"]) -> Array:
  """float32[B] 1 where a sampled answer equals the target answer token for token, else 0
  (the checker on token ids)."""
  return (answers == targets).all(axis=-1).astype(np.float32)
