"""The tokenizer interface shared by the environment, the sampler and the model importers.

Every tokenizer used here (the project's own SentencePiece models, Gemma's SentencePiece,
SmolLM2's byte-level BPE, Qwen's BPE) splits digits one per token, so the environment needs
from a tokenizer only a few token tables (which id is which digit, sign, point, exponent
marker, and the protocol's markers); see `autollm_jax.env`.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids.

  Implementations: `autollm_jax.sp_tokenizer` (SentencePiece models trained here) and
  `autollm_jax.model.tokenizers` (read from GGUF files).
  """

  @property
  def vocab_size(self) -> int:
    """Number of token ids (the model's embedding rows may be more, padded)."""

  @property
  def bos_id(self) -> int:
    """Beginning-of-sequence id, or -1 if the tokenizer has none."""

  @property
  def eos_id(self) -> int:
    """End-of-sequence id."""

  @property
  def pad_id(self) -> int:
    """Padding id (may equal eos_id)."""

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS."""

  def decode(self, ids: Sequence[int]) -> str:
    """The text of `ids` (special tokens dropped)."""

  def id_to_piece(self, token_id: int) -> str:
    """The surface string of one token (as it appears in decoded text)."""

  def piece_to_id(self, piece: str) -> int:
    """The id of a piece given as its surface string; KeyError if it is not one token."""
