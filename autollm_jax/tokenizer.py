"""The tokenizer interface shared by the environment, the sampler and the model importers, and
`tokenizer_from_blob`, which restores any tokenizer the project saves.

Every tokenizer used here (the project's own SentencePiece models, Gemma's SentencePiece,
SmolLM2's and Qwen3's byte-level BPEs) splits digits one per token, so the environment needs
from a tokenizer only a few token tables (which id is which digit, sign, point, exponent
marker, and the protocol's markers); see `autollm_jax.grammar`.
"""

from __future__ import annotations

import base64
import json
from typing import Protocol, Sequence, runtime_checkable

from autollm_jax import protocol_tokenizer
from autollm_jax import sp_tokenizer


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids.

  Implementations: `autollm_jax.sp_tokenizer.SentencePieceTokenizer` (the models trained here
  and Gemma's), `autollm_jax.model.tokenizers.ByteBPETokenizer` (SmolLM2's) and
  `autollm_jax.protocol_tokenizer.ProtocolTokenizer` (a pretrained one with the protocol
  markers).
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

  def to_blob(self) -> bytes:
    """Bytes that `tokenizer_from_blob` turns back into this tokenizer (checkpoints keep them)."""


def tokenizer_from_blob(blob: bytes) -> Tokenizer:
  """Any tokenizer this project saves, from its `to_blob()` bytes.

  A SentencePiece tokenizer's blob is its model proto (a protobuf, never starting with "{");
  the others are JSON objects with a "kind": "byte_bpe" (`ByteBPETokenizer`) or "protocol"
  (`ProtocolTokenizer`: the base tokenizer's blob, base64, and the marker ids).
  """
  if not blob.startswith(b"{"):
    return sp_tokenizer.SentencePieceTokenizer(blob)
  data = json.loads(blob)
  kind = data.get("kind")
  if kind == protocol_tokenizer.BLOB_KIND:
    return protocol_tokenizer.ProtocolTokenizer(
        tokenizer_from_blob(base64.b64decode(data["base"])), data["marker_ids"])
  if kind == "byte_bpe":
    # Imported here: it needs the model-import extra (the `tokenizers` package).
    from autollm_jax.model import tokenizers  # pylint: disable=import-outside-toplevel
    return tokenizers.ByteBPETokenizer(data["tokenizer_json"], data["bos_id"], data["eos_id"],
                                       data["pad_id"])
  raise ValueError(f"unknown tokenizer blob kind {kind!r} (known: SentencePiece proto, "
                   f"byte_bpe, {protocol_tokenizer.BLOB_KIND}); was it saved by another version?")
