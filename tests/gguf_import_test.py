"""Tests of the GGUF importers against an independent NumPy forward pass, and the tokenizers.

The reference below works on the GGUF arrays as stored (llama Q/K rows in the adjacent-pair
RoPE layout, GGUF norm weights as they are) and shares no code with the model.
"""

import math

from absl.testing import absltest
import gguf
import jax.numpy as jnp
import numpy as np

from autollm_jax import sampler as sampler_lib
from autollm_jax.model import chat, gguf_import, transformer
from autollm_jax.model.config import get_config
from autollm_jax.tokenizer import Tokenizer, tokenizer_from_blob

GEMMA_LOCAL_ROPE_BASE = 10_000.0  # Gemma 3's local layers (not recorded in the GGUF)


def _meta(reader, key):
  return reader.fields[key].contents()


def _tensors(reader):
  return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
      tuple(reversed(t.shape.tolist()))) for t in reader.tensors}


def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x, pos, base, adjacent_pairs):
  dim = x.shape[-1]
  theta = base ** (-np.arange(0, dim, 2) / dim)
  ang = pos[:, None, None] * theta  # [T, 1, dim/2]
  cos, sin = np.cos(ang), np.sin(ang)
  if adjacent_pairs:
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
    return out
  a, b = x[..., :dim // 2], x[..., dim // 2:]
  return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def reference_logits(reader, tensors, tokens):
  """Float64 logits [T, V] of one token sequence, straight from the GGUF arrays."""
  arch = _meta(reader, "general.architecture")
  gemma = arch == "gemma3"
  hp = lambda k, d=None: _meta(reader, f"{arch}.{k}") if f"{arch}.{k}" in reader.fields else d
  layers, heads, kv_heads = hp("block_count"), hp("attention.head_count"), hp(
      "attention.head_count_kv")
  eps, dim = hp("attention.layer_norm_rms_epsilon"), hp("embedding_length")
  head_dim = hp("attention.key_length", dim // heads)
  window = hp("attention.sliding_window")
  t = len(tokens)
  pos = np.arange(t, dtype=np.float64)
  x = tensors["token_embd.weight"][tokens]
  if gemma:
    x = x * math.sqrt(dim)
  for i in range(layers):
    w = lambda n: tensors[f"blk.{i}.{n}.weight"]
    local = gemma and (i + 1) % 6 != 0
    base = GEMMA_LOCAL_ROPE_BASE if local else hp("rope.freq_base")
    h = _rms(x, w("attn_norm"), eps)
    q = (h @ w("attn_q").T).reshape(t, heads, head_dim)
    k = (h @ w("attn_k").T).reshape(t, kv_heads, head_dim)
    v = (h @ w("attn_v").T).reshape(t, kv_heads, head_dim)
    if gemma:
      q, k = _rms(q, w("attn_q_norm"), eps), _rms(k, w("attn_k_norm"), eps)
    q, k = _rope(q, pos, base, not gemma), _rope(k, pos, base, not gemma)
    out = np.zeros((t, heads, head_dim))
    for head in range(heads):
      g = head // (heads // kv_heads)
      scores = q[:, head] @ k[:, g].T / math.sqrt(head_dim)
      i_idx, j_idx = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
      visible = (j_idx <= i_idx) & (~local | (i_idx - j_idx < (window or t)))
      scores = np.where(visible, scores, -np.inf)
      probs = np.exp(scores - scores.max(-1, keepdims=True))
      out[:, head] = (probs / probs.sum(-1, keepdims=True)) @ v[:, g]
    a = out.reshape(t, heads * head_dim) @ w("attn_output").T
    if gemma:
      a = _rms(a, w("post_attention_norm"), eps)
    x = x + a
    h = _rms(x, w("ffn_norm"), eps)
    gate, up = h @ w("ffn_gate").T, h @ w("ffn_up").T
    if gemma:
      act = 0.5 * gate * (1 + np.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate**3)))
    else:
      act = gate / (1 + np.exp(-gate))
    m = (act * up) @ w("ffn_down").T
    if gemma:
      m = _rms(m, w("post_ffw_norm"), eps)
    x = x + m
  x = _rms(x, tensors["output_norm.weight"], eps)
  return x @ tensors.get("output.weight", tensors["token_embd.weight"]).T


class _PretrainedTest(absltest.TestCase):
  NAME = ""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    path = gguf_import.PRETRAINED_GGUF[cls.NAME]()
    cls.reader = gguf.GGUFReader(path)
    cls.pretrained = gguf_import.load_from_reader(cls.reader, get_config(cls.NAME), path)
    cls.tok = cls.pretrained.tokenizer
    cls.graphdef, _ = transformer.abstract_model(cls.pretrained.config)

  def greedy(self, text, steps, bos):
    ids = ([self.tok.bos_id] if bos else []) + self.tok.encode(text)
    sampler = sampler_lib.Sampler(self.graphdef, self.pretrained.config, self.tok.pad_id)
    out = sampler(self.pretrained.params, [ids], sampler_lib.SamplingParams(steps),
                  stop_ids=chat.stop_ids(self.pretrained.config.family, self.tok))
    return self.tok.decode(out.tokens[0, :int(out.lengths[0])].tolist())

  def check_logits_match_reference(self, tokens):
    expected = reference_logits(self.reader, _tensors(self.reader), np.array(tokens))
    logits, _ = transformer.forward(self.graphdef, self.pretrained.params,
                                    jnp.array([tokens]), jnp.arange(len(tokens))[None])
    got = np.asarray(logits[0], np.float64)
    np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))

  def check_tokenizer(self):
    self.assertIsInstance(self.tok, Tokenizer)
    text = "lr=3.45e-04 bs=2.56e+02, loss 2.2255 ü ∑"
    ids = self.tok.encode(text)
    self.assertEqual(self.tok.decode(ids), text)
    self.assertEqual([self.tok.id_to_piece(i) for i in self.tok.encode("2.2255")],
                     list("2.2255"))
    for digit in "0123456789":
      self.assertEqual(self.tok.encode(digit), [self.tok.piece_to_id(digit)])
    with self.assertRaises(KeyError):
      self.tok.piece_to_id("not one token, surely")
    rebuilt = tokenizer_from_blob(self.tok.to_blob())
    self.assertEqual(rebuilt.encode(text), ids)
    self.assertEqual((rebuilt.bos_id, rebuilt.eos_id, rebuilt.pad_id),
                     (self.tok.bos_id, self.tok.eos_id, self.tok.pad_id))


class Gemma3Test(_PretrainedTest):
  NAME = "gemma3_270m"

  def test_logits_match_numpy_reference(self):
    # 12 tokens: long enough for position-dependent RoPE, cheap in float64.
    self.check_logits_match_reference([self.tok.bos_id] + self.tok.encode(
        "The learning rate is one of the most important"))

  def test_greedy_continuation(self):
    prompt = "The learning rate is one of the most important hyperparameters when training"
    self.assertTrue(self.greedy(prompt, 3, bos=True).startswith(" a neural network"))

  def test_tokenizer(self):
    self.check_tokenizer()
    self.assertEqual((self.tok.bos_id, self.tok.eos_id, self.tok.pad_id), (2, 1, 0))
    self.assertEqual(self.tok.vocab_size, 262_144)
    self.assertEqual(self.tok.encode("<start_of_turn>user\n")[0], 105)

  def test_wrong_config_is_a_clear_error(self):
    with self.assertRaisesRegex(ValueError, "block_count = 18"):
      gguf_import.check_metadata(self.reader, get_config(self.NAME, num_layers=4), "x.gguf")


class SmolLM2Test(_PretrainedTest):
  NAME = "smollm2_135m"

  def test_logits_match_numpy_reference(self):
    self.check_logits_match_reference(self.tok.encode("What is the capital of France?"))

  def test_chat_answers_paris(self):
    answer = self.greedy(chat.render_user_turn("llama", "What is the capital of France?"), 10,
                         bos=False)
    self.assertIn("Paris", answer)

  def test_tokenizer(self):
    self.check_tokenizer()
    self.assertEqual(self.tok.piece_to_id("<|im_end|>"), 2)
    self.assertEqual(self.tok.encode("<|im_start|>user"), [1, 4093])
    self.assertEqual(self.tok.decode([1, 4093, 2]), "user")


if __name__ == "__main__":
  absltest.main()
