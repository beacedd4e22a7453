"""SentencePiece tokenizers trained on protocol text."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from autollm_jax import protocol
from autollm_jax import sp_tokenizer
from autollm_jax.tokenizer import Tokenizer, tokenizer_from_blob


def protocol_corpus(n: int = 200, seed: int = 0) -> list[str]:
  """Turns and feedback of a two-parameter task with random values."""
  rng = np.random.default_rng(seed)
  texts = ["<task> pretrain: choose the learning rate and the batch size. Metric: smooth "
           "loss, lower is better.\n<target> fidelity big (N=1.07e+09 D=2.00e+10)."]
  for _ in range(n):
    values = 10.0 ** rng.uniform(-4, 3, size=2)
    texts.append(protocol.render_turn("the best lr fell as N grew", ["lr", "bs"], values) +
                 protocol.render_feedback("smooth loss", rng.uniform(2, 3), 2.1, 3))
  return texts


class SentencePieceTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tok = sp_tokenizer.train_sentencepiece(protocol_corpus(), vocab_size=500)

  def test_is_a_tokenizer(self):
    self.assertIsInstance(self.tok, Tokenizer)
    self.assertEqual((self.tok.pad_id, self.tok.bos_id, self.tok.eos_id), (0, 2, 3))
    self.assertGreater(self.tok.vocab_size, 256 + len(protocol.MARKERS))

  @parameterized.parameters(
      "<execute> lr=1.38e-03 bs=2.56e+02 </execute>\n<obs> x=none best=none left=0 </obs>\n",
      "  two  spaces, a tab\tand unseen ☃ é 漢字\n\nend", "lr=9.99e+99")
  def test_decode_encode_round_trips(self, text):
    self.assertEqual(self.tok.decode(self.tok.encode(text)), text)

  def test_digits_and_markers_are_single_tokens(self):
    for s in list("0123456789") + list(protocol.MARKERS) + ["\n"]:
      token = self.tok.piece_to_id(s)
      self.assertEqual(self.tok.id_to_piece(token), s)
      self.assertEqual(self.tok.decode([token]), s)
    ids = self.tok.encode("1234567890")
    self.assertEqual([self.tok.id_to_piece(i) for i in ids], list("1234567890"))
    self.assertEqual(self.tok.encode("a<execute>b")[1], self.tok.piece_to_id("<execute>"))

  def test_pieces_show_spaces_and_reject_multi_token_text(self):
    ids = self.tok.encode(" lr=")
    self.assertEqual("".join(self.tok.id_to_piece(i) for i in ids), " lr=")
    with self.assertRaises(KeyError):
      self.tok.piece_to_id("not one token at all")

  def test_serializes_to_a_blob(self):
    again = tokenizer_from_blob(self.tok.to_blob())
    self.assertIsInstance(again, sp_tokenizer.SentencePieceTokenizer)
    text = protocol_corpus(3, seed=1)[2]
    self.assertEqual(again.encode(text), self.tok.encode(text))
    self.assertEqual(again.vocab_size, self.tok.vocab_size)
    with self.assertRaisesRegex(ValueError, "unknown tokenizer blob kind 'nope'"):
      tokenizer_from_blob(b'{"kind": "nope"}')

  def test_bpe_model(self):
    tok = sp_tokenizer.train_sentencepiece(protocol_corpus(50), vocab_size=400,
                                           model_type="bpe")
    text = protocol.render_action(["lr"], [3.45e-4])
    self.assertEqual(tok.decode(tok.encode(text)), text)
    self.assertEqual(tok.id_to_piece(tok.encode("<obs>")[0]), "<obs>")

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "vocab_size"):
      sp_tokenizer.train_sentencepiece(protocol_corpus(20), vocab_size=100)
    with self.assertRaisesRegex(ValueError, "no text"):
      sp_tokenizer.train_sentencepiece(["", "\n"])


if __name__ == "__main__":
  absltest.main()
