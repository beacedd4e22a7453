"""The protocol markers on a pretrained vocabulary: Gemma-3's tokenizer (read from its GGUF
once) wrapped by ProtocolTokenizer. SmolLM2's wrapped tokenizer is tested with the pretrained
pipeline (pretrained_policy_test.py)."""

from absl.testing import absltest
import gguf

from autollm_jax import evaluation
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import protocol_tokenizer
from autollm_jax.model import gguf_import, tokenizers
from autollm_jax.tokenizer import Tokenizer, tokenizer_from_blob


def episode_text() -> tuple[list[str], str]:
  """A synthetic task's parameter names and a prompt, two turns and their feedback."""
  table = evaluation.synthetic_table(num_fidelities=3)
  experiment = experiments_lib.curate([table], seed=0)[0]
  text = protocol.render_prompt(table, experiment, 3)
  for value, left in ((3.45e-4, 1), (1.0e-2, 0)):
    text += (protocol.render_turn("lr fell as N grew; try 3x less", table.param_names,
                                  [value, 256.0]) +
             protocol.render_feedback("loss", 2.2255, -0.5, left))
  return list(table.param_names), text


class GemmaProtocolTokenizerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    reader = gguf.GGUFReader(gguf_import.PRETRAINED_GGUF["gemma3_270m"]())
    cls.base = tokenizers.tokenizer_from_gguf(reader)
    cls.tok = protocol_tokenizer.for_pretrained("gemma3_270m", cls.base)

  def test_the_base_vocabulary_lacks_the_markers(self):
    with self.assertRaisesRegex(ValueError, "protocol marker '<task>' is not a single token"):
      grammar.TokenTables.build(self.base)

  def test_token_tables_and_grammar_build(self):
    self.assertIsInstance(self.tok, Tokenizer)
    tables = grammar.TokenTables.build(self.tok)
    self.assertEqual([tables.marker_ids[m] for m in protocol.MARKERS], list(range(6, 15)))
    self.assertEqual([self.base.id_to_piece(i) for i in tables.char_ids], list(grammar.CHARS))
    names, _ = episode_text()
    g = grammar.build_grammar(tables, [names])
    self.assertEqual(g.fsm.vocab_size, 262_144)

  def test_protocol_text_round_trips(self):
    _, text = episode_text()
    tables = grammar.TokenTables.build(self.tok)
    ids = tables.encode(text)
    self.assertEqual(self.tok.decode(ids), text)
    self.assertEqual(self.tok.decode(self.tok.encode(text)), text)
    self.assertEqual(ids.count(self.tok.marker_ids[protocol.EXECUTE]), 2)
    action = tables.encode(protocol.render_action(["lr"], [3.45e-4]))
    self.assertEqual([self.tok.id_to_piece(i) for i in action[-10:-2]], list("3.45e-04"))

  def test_blob_restores_the_wrapped_tokenizer(self):
    again = tokenizer_from_blob(self.tok.to_blob())
    self.assertIsInstance(again, protocol_tokenizer.ProtocolTokenizer)
    self.assertEqual(again.marker_ids, self.tok.marker_ids)
    self.assertEqual((again.bos_id, again.eos_id, again.pad_id, again.vocab_size),
                     (2, 1, 0, 262_144))
    _, text = episode_text()
    self.assertEqual(again.encode(text), self.tok.encode(text))

  def test_reserved_token_text_is_rejected(self):
    with self.assertRaisesRegex(ValueError, "reserves for the protocol marker '<think>'"):
      self.tok.encode("a param named <unused3>")
    with self.assertRaisesRegex(KeyError, "reserved for the protocol marker"):
      self.tok.piece_to_id("<unused3>")
    self.assertEqual(self.tok.piece_to_id("<unused9>"), 15)

  def test_bad_marker_maps(self):
    markers = dict(self.tok.marker_ids)
    with self.assertRaisesRegex(ValueError, "other than BOS/EOS/padding"):
      protocol_tokenizer.ProtocolTokenizer(self.base, {**markers, protocol.OBS: 1})
    with self.assertRaisesRegex(ValueError, "distinct"):
      protocol_tokenizer.ProtocolTokenizer(self.base, {**markers, protocol.OBS: 6})
    del markers[protocol.OBS]
    with self.assertRaisesRegex(ValueError, "exactly the protocol markers"):
      protocol_tokenizer.ProtocolTokenizer(self.base, markers)
    with self.assertRaisesRegex(KeyError, "no reserved protocol tokens"):
      protocol_tokenizer.for_pretrained("scratch_1m", self.base)
    # Another model's reserved tokens are not this vocabulary's.
    with self.assertRaisesRegex(KeyError, "not a single token"):
      protocol_tokenizer.for_pretrained("qwen3_1.7b", self.base)


if __name__ == "__main__":
  absltest.main()
