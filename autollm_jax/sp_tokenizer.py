"""SentencePiece tokenizers: the one class for every SentencePiece model (the ones trained here
on the protocol's text, and Gemma's, rebuilt from GGUF in `autollm_jax.model.tokenizers`).

`train_sentencepiece` fits a model on episode text (prompts, turns, feedback) so that:
  * digits are split one per token (the environment parses numbers digit by digit);
  * the protocol's markers (`<execute>`, `<obs>`, ...) and the line break are single,
    user-defined tokens;
  * text is kept verbatim (identity normalization, no dummy prefix, spaces kept), so that
    decode(encode(text)) == text and token sequences concatenate like their texts;
  * unseen characters fall back to UTF-8 bytes instead of an unknown token.
The tokenizer's blob is its serialized model proto (`to_blob`, restored by
`autollm_jax.tokenizer.tokenizer_from_blob` or the constructor), which a checkpoint carries.
"""

from __future__ import annotations

import io
from typing import Iterable, Sequence

import sentencepiece as spm

from autollm_jax import protocol

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_SPACE = "\u2581"  # SentencePiece's visible space


class SentencePieceTokenizer:
  """A `autollm_jax.tokenizer.Tokenizer` over a SentencePiece model proto."""

  def __init__(self, model_proto: bytes):
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto)

  def to_blob(self) -> bytes:
    """The serialized model proto; the constructor given it builds the same tokenizer."""
    return self._proto

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def bos_id(self) -> int:
    return self._sp.bos_id()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id() if self._sp.pad_id() >= 0 else self._sp.eos_id()

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, token_id: int) -> str:
    """The token's text: visible spaces as spaces, an ASCII byte piece as its character."""
    piece = self._sp.id_to_piece(int(token_id))
    if self._sp.is_byte(int(token_id)):
      byte = int(piece[3:5], 16)
      return chr(byte) if byte < 0x80 else piece
    return piece.replace(_SPACE, " ")

  def piece_to_id(self, piece: str) -> int:
    """The id of the single token whose text is `piece`; KeyError if there is none."""
    token_id = self._sp.piece_to_id(piece.replace(" ", _SPACE))
    if token_id != self._sp.unk_id() or piece == self._sp.id_to_piece(token_id):
      return token_id
    if len(piece) == 1 and ord(piece) < 0x80:
      byte_id = self._sp.piece_to_id(f"<0x{ord(piece):02X}>")
      if byte_id != self._sp.unk_id():
        return byte_id
    raise KeyError(f"{piece!r} is not a single token of this SentencePiece model")


def train_sentencepiece(texts: Iterable[str], vocab_size: int = 1024,
                        model_type: str = "unigram") -> SentencePieceTokenizer:
  """Trains a SentencePiece model on protocol text (see the module docstring).

  Args:
    texts: episode texts; they are split at line breaks (the line break is its own token).
    vocab_size: the most pieces (fewer when the text has fewer distinct ones). It must leave
      room for the 4 special, 256 byte and protocol marker pieces and the text's characters.
    model_type: "unigram" or "bpe".
  Returns:
    The trained tokenizer.
  """
  lines = [line for text in texts for line in text.split("\n") if line]
  if not lines:
    raise ValueError("no text to train a SentencePiece model on")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, split_digits=True, byte_fallback=True,
        user_defined_symbols=list(protocol.MARKERS) + ["\n"], add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        character_coverage=1.0, allow_whitespace_only_pieces=True, hard_vocab_limit=False,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, num_threads=2,
        max_sentence_length=1 << 16, minloglevel=2)
  except RuntimeError as e:
    raise ValueError(f"SentencePiece training failed (vocab_size={vocab_size}, "
                     f"model_type={model_type!r}): {e}; a vocab_size of at least 512 leaves "
                     "room for the byte and marker pieces") from e
  return SentencePieceTokenizer(model.getvalue())
