"""Tokenizers of pretrained models, implementing `autollm_jax.tokenizer.Tokenizer`.

From GGUF metadata, Gemma's vocabulary ("llama" tokenizer model in GGUF) is rebuilt as an exact
SentencePiece BPE model proto (a `sp_tokenizer.SentencePieceTokenizer`), SmolLM2's ("gpt2"
model) as a byte-level BPE of the `tokenizers` package; a Hugging Face checkpoint's byte-level
BPE (Qwen3, Llama 3, SmolLM2) is read from its tokenizer.json. All serialise to a blob
(`to_blob`) that checkpoints keep and `autollm_jax.tokenizer.tokenizer_from_blob` restores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import gguf
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from autollm_jax.sp_tokenizer import SentencePieceTokenizer


class ByteBPETokenizer:
  """A byte-level BPE (`tokenizers`) with the ids of its special roles."""

  def __init__(self, tokenizer_json: str, bos_id: int, eos_id: int, pad_id: int):
    self._json = tokenizer_json
    self._tok = Tokenizer.from_str(tokenizer_json)
    self._bos, self._eos, self._pad = bos_id, eos_id, pad_id
    self._byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def bos_id(self) -> int:
    return self._bos

  @property
  def eos_id(self) -> int:
    return self._eos

  @property
  def pad_id(self) -> int:
    return self._pad

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def id_to_piece(self, token_id: int) -> str:
    piece = self._tok.id_to_token(token_id)
    if piece is None:
      raise KeyError(f"token id {token_id} out of range")
    if any(c not in self._byte_decoder for c in piece):  # an added (special) token
      return piece
    return bytes(self._byte_decoder[c] for c in piece).decode("utf-8", errors="replace")

  def piece_to_id(self, piece: str) -> int:
    token_id = self._tok.token_to_id(piece)  # special tokens are stored as their text
    if token_id is None:
      encoder = _bytes_to_unicode()
      token_id = self._tok.token_to_id("".join(encoder[b] for b in piece.encode("utf-8")))
    if token_id is None:
      raise KeyError(f"{piece!r} is not a single token")
    return token_id

  def to_blob(self) -> bytes:
    return json.dumps({"kind": "byte_bpe", "tokenizer_json": self._json, "bos_id": self._bos,
                       "eos_id": self._eos, "pad_id": self._pad}).encode()


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map from bytes to printable characters."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
  mapping, extra = {}, 0
  for b in range(256):
    if b in keep:
      mapping[b] = chr(b)
    else:
      mapping[b] = chr(256 + extra)
      extra += 1
  return mapping


def gguf_field(reader: gguf.GGUFReader, key: str, default=None):
  """The value of a GGUF metadata field, or `default` where the file has none."""
  field = reader.fields.get(key)
  return default if field is None else field.contents()


# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
_SP_TYPES = {1: sp_pb2.ModelProto.SentencePiece.NORMAL, 2: sp_pb2.ModelProto.SentencePiece.UNKNOWN,
             3: sp_pb2.ModelProto.SentencePiece.CONTROL,
             4: sp_pb2.ModelProto.SentencePiece.USER_DEFINED,
             5: sp_pb2.ModelProto.SentencePiece.UNUSED, 6: sp_pb2.ModelProto.SentencePiece.BYTE}


def sentencepiece_from_gguf(reader: gguf.GGUFReader) -> SentencePieceTokenizer:
  """Gemma's SentencePiece BPE model from the GGUF vocabulary, scores and token types.

  Control tokens written like markup (`<start_of_turn>`) become user-defined pieces so that
  chat templates given as text encode to them, as Gemma's own tokenizer does.
  """
  tokens = gguf_field(reader, "tokenizer.ggml.tokens")
  scores = gguf_field(reader, "tokenizer.ggml.scores")
  types = gguf_field(reader, "tokenizer.ggml.token_type")
  unk = gguf_field(reader, "tokenizer.ggml.unknown_token_id", 3)
  roles = {gguf_field(reader, f"tokenizer.ggml.{r}_token_id", -1)
           for r in ("bos", "eos", "padding")}
  proto = sp_pb2.ModelProto()
  for i, (piece, score, kind) in enumerate(zip(tokens, scores, types)):
    p = proto.pieces.add()
    p.piece, p.score = piece, score
    if i == unk:
      p.type = sp_pb2.ModelProto.SentencePiece.UNKNOWN
    elif kind == 3 and i not in roles and piece.startswith("<") and piece.endswith(">"):
      p.type = sp_pb2.ModelProto.SentencePiece.USER_DEFINED
    else:
      p.type = _SP_TYPES[kind]
  spec = proto.trainer_spec
  spec.model_type = sp_pb2.TrainerSpec.BPE
  spec.vocab_size = len(tokens)
  spec.byte_fallback = True
  spec.split_digits = True
  spec.allow_whitespace_only_pieces = True
  # SentencePiece finds its special ids by piece text, so name the pieces as well as the ids.
  for role, key in (("unk", "unknown"), ("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
    token_id = unk if role == "unk" else gguf_field(reader, f"tokenizer.ggml.{key}_token_id", -1)
    setattr(spec, f"{role}_id", token_id)
    if token_id >= 0:
      setattr(spec, f"{role}_piece", tokens[token_id])
  norm = proto.normalizer_spec
  norm.name = "identity"
  norm.add_dummy_prefix = bool(gguf_field(reader, "tokenizer.ggml.add_space_prefix", False))
  norm.remove_extra_whitespaces = False
  norm.escape_whitespaces = True
  return SentencePieceTokenizer(proto.SerializeToString())


def byte_bpe_from_gguf(reader: gguf.GGUFReader) -> ByteBPETokenizer:
  """A GPT-2 style byte-level BPE from the GGUF vocabulary and merges (digits split one by
  one, as SmolLM2's pre-tokenizer does)."""
  tokens = gguf_field(reader, "tokenizer.ggml.tokens")
  types = gguf_field(reader, "tokenizer.ggml.token_type")
  merges = [tuple(m.split(" ", 1)) for m in gguf_field(reader, "tokenizer.ggml.merges")]
  tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                          for t, kind in zip(tokens, types) if kind == 3])
  eos = gguf_field(reader, "tokenizer.ggml.eos_token_id")
  return ByteBPETokenizer(tok.to_str(),
                          bos_id=gguf_field(reader, "tokenizer.ggml.bos_token_id", -1),
                          eos_id=eos,
                          pad_id=gguf_field(reader, "tokenizer.ggml.padding_token_id", eos))


def tokenizer_from_gguf(reader: gguf.GGUFReader) -> SentencePieceTokenizer | ByteBPETokenizer:
  """The tokenizer described by a GGUF file's metadata."""
  model = gguf_field(reader, "tokenizer.ggml.model")
  if model == "llama":
    return sentencepiece_from_gguf(reader)
  if model == "gpt2":
    return byte_bpe_from_gguf(reader)
  raise ValueError(f"unsupported GGUF tokenizer model {model!r} (supported: llama, gpt2)")


def _hf_json(path: Path) -> dict:
  return json.loads(path.read_text()) if path.is_file() else {}


def byte_bpe_from_hf(directory: str | Path) -> ByteBPETokenizer:
  """The byte-level BPE of a Hugging Face checkpoint directory: tokenizer.json, with the BOS
  and EOS ids of its config.json and the padding token of its tokenizer_config.json (else EOS).

  Raises:
    ValueError: no tokenizer.json, or one that is not a byte-level BPE (Gemma's is not: read
      Gemma from its GGUF file instead).
  """
  directory = Path(directory)
  file = directory / "tokenizer.json"
  if not file.is_file():
    raise ValueError(f"{file} is missing: a Hugging Face checkpoint directory holds its "
                     "tokenizer there")
  text = file.read_text()
  spec = json.loads(text)
  if spec.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(
      spec.get("pre_tokenizer")):
    raise ValueError(f"{file}: not a byte-level BPE tokenizer (the kind Qwen3, Llama 3 and "
                     "SmolLM2 use); this importer reads only those")
  hf = _hf_json(directory / "config.json")
  first = lambda v: v[0] if isinstance(v, list) else v
  eos = first(hf.get("eos_token_id"))
  if eos is None:
    raise ValueError(f"{directory / 'config.json'}: no eos_token_id")
  bos = first(hf.get("bos_token_id"))
  pad_token = _hf_json(directory / "tokenizer_config.json").get("pad_token")
  pad_token = pad_token.get("content") if isinstance(pad_token, dict) else pad_token
  ids = {**spec["model"].get("vocab", {}),
         **{t["content"]: t["id"] for t in spec.get("added_tokens", [])}}
  pad = ids.get(pad_token)
  return ByteBPETokenizer(text, bos_id=-1 if bos is None else bos, eos_id=eos,
                          pad_id=eos if pad is None else pad)
