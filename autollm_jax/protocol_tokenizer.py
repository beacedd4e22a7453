"""Protocol markers for pretrained tokenizers: each marker mapped to a reserved token.

The environment needs every protocol marker (`<task>`, `<execute>`, ...) as one token
(`autollm_jax.grammar.TokenTables`). The project's SentencePiece models have them as
user-defined pieces; a pretrained vocabulary does not, but it has tokens that ordinary text
never produces. `ProtocolTokenizer` wraps such a tokenizer: each marker is one of those
reserved tokens, text is encoded by splitting it at the markers, and decoding writes the
markers back, so the wrapped tokenizer reads and writes protocol text like the project's own.

Reserved tokens chosen per pretrained model (`RESERVED_TOKENS`, in `protocol.MARKERS` order):
  * Gemma 3: `<unused0>` .. `<unused8>` (ids 6..14), which Gemma reserves for fine-tuning.
  * SmolLM2: ids 8..16, the StarCoder code-metadata control tokens, as `<task>` `<issue_start>`,
    `<target>` `<issue_comment>`, `<cheap>` `<issue_closed>`, `<think>` `<jupyter_text>`,
    `</think>` `<jupyter_start>`, `<execute>` `<jupyter_code>`, `</execute>`
    `<jupyter_script>`, `<obs>` `<jupyter_output>`, `</obs>` `<empty_output>`; its chat and
    special tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) stay as they are.
  * Qwen3 (every size): ids 151646..151654, the vision-language markers a text model never
    writes (`<|object_ref_start|>` .. `<|vision_pad|>`); its chat and thinking tokens
    (`<|im_start|>`, `<think>`, ...) stay as they are.
Text that spells a reserved token literally (`"<unused0>"`) would encode to a marker; encode
rejects it with a clear error instead.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Mapping, Sequence

from autollm_jax import protocol

if TYPE_CHECKING:
  from autollm_jax.tokenizer import Tokenizer

BLOB_KIND = "protocol"
_QWEN_RESERVED = ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
                  "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>")
RESERVED_TOKENS: dict[str, tuple[str, ...]] = {
    "gemma3_270m": tuple(f"<unused{i}>" for i in range(len(protocol.MARKERS))),
    "qwen3_1.7b": _QWEN_RESERVED,
    "qwen3_4b": _QWEN_RESERVED,
    "smollm2_135m": ("<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_text>",
                     "<jupyter_start>", "<jupyter_code>", "<jupyter_script>", "<jupyter_output>",
                     "<empty_output>"),
}
_MARKER_SPLIT = re.compile("(" + "|".join(re.escape(m) for m in protocol.MARKERS) + ")")


class ProtocolTokenizer:
  """A `Tokenizer` whose protocol markers are reserved tokens of a base tokenizer.

  Ids, vocabulary size and the special ids are the base's; only the marker ids read and
  write differently (as the marker text).
  """

  def __init__(self, base: Tokenizer, marker_ids: Mapping[str, int]):
    """Wraps `base`.

    Args:
      base: the pretrained tokenizer.
      marker_ids: protocol marker -> the base token id that stands for it (every marker of
        `protocol.MARKERS`, distinct ids, none of them BOS, EOS or padding).
    """
    if set(marker_ids) != set(protocol.MARKERS):
      raise ValueError(f"marker_ids must map exactly the protocol markers {protocol.MARKERS}, "
                       f"got {sorted(marker_ids)}")
    ids = [int(i) for i in marker_ids.values()]
    specials = {base.bos_id, base.eos_id, base.pad_id}
    bad = [i for i in ids if not 0 <= i < base.vocab_size or i in specials]
    if bad or len(set(ids)) != len(ids):
      raise ValueError(f"marker ids {ids} must be distinct ids of the base vocabulary "
                       f"(0..{base.vocab_size - 1}) other than BOS/EOS/padding {sorted(specials)}")
    self.base = base
    self.marker_ids = {m: int(i) for m, i in marker_ids.items()}
    self._markers = {i: m for m, i in self.marker_ids.items()}

  @classmethod
  def reserving(cls, base: Tokenizer, reserved: Sequence[str]) -> ProtocolTokenizer:
    """The protocol markers, in `protocol.MARKERS` order, as these reserved pieces of `base`."""
    if len(reserved) != len(protocol.MARKERS):
      raise ValueError(f"{len(reserved)} reserved tokens for {len(protocol.MARKERS)} markers")
    return cls(base, {m: base.piece_to_id(r) for m, r in zip(protocol.MARKERS, reserved)})

  @property
  def vocab_size(self) -> int:
    return self.base.vocab_size

  @property
  def bos_id(self) -> int:
    return self.base.bos_id

  @property
  def eos_id(self) -> int:
    return self.base.eos_id

  @property
  def pad_id(self) -> int:
    return self.base.pad_id

  def encode(self, text: str) -> list[int]:
    """Markers as their reserved ids, the text between them through the base tokenizer."""
    ids = []
    for i, part in enumerate(_MARKER_SPLIT.split(text)):
      if i % 2:
        ids.append(self.marker_ids[part])
      elif part:
        between = self.base.encode(part)
        clash = [self._markers[t] for t in between if t in self._markers]
        if clash:
          raise ValueError(f"the text {part[:80]!r} spells a token that this tokenizer reserves "
                           f"for the protocol marker {clash[0]!r}; remove it from the text")
        ids += between
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    out, run = [], []
    for token in ids:
      token = int(token)
      if token in self._markers:
        out += [self.base.decode(run), self._markers[token]]
        run = []
      else:
        run.append(token)
    return "".join(out) + self.base.decode(run)

  def id_to_piece(self, token_id: int) -> str:
    return self._markers.get(int(token_id)) or self.base.id_to_piece(token_id)

  def piece_to_id(self, piece: str) -> int:
    """The marker's id for a marker; else the base's id, unless that id is a marker's."""
    if piece in self.marker_ids:
      return self.marker_ids[piece]
    token_id = self.base.piece_to_id(piece)
    if token_id in self._markers:
      raise KeyError(f"{piece!r} is reserved for the protocol marker {self._markers[token_id]!r}")
    return token_id

  def to_blob(self) -> bytes:
    """JSON: the base's blob and the marker map (`autollm_jax.tokenizer.tokenizer_from_blob`)."""
    return json.dumps({"kind": BLOB_KIND, "base": base64.b64encode(self.base.to_blob()).decode(),
                       "marker_ids": self.marker_ids}).encode()


def for_pretrained(name: str, base: Tokenizer) -> ProtocolTokenizer:
  """The tokenizer of pretrained model `name` (a key of RESERVED_TOKENS) with the markers."""
  if name not in RESERVED_TOKENS:
    raise KeyError(f"no reserved protocol tokens chosen for model {name!r}; models: "
                   f"{sorted(RESERVED_TOKENS)}")
  return ProtocolTokenizer.reserving(base, RESERVED_TOKENS[name])
