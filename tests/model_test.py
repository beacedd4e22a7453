"""Tests of the decoder: KV-cache decoding equals the full forward pass, and the switches."""

import functools
from unittest import mock

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax import memory
from autollm_jax.model import config as config_lib
from autollm_jax.model import kv_cache, transformer

TINY = dict(vocab_size=61, embed_dim=32, num_layers=3, num_heads=4, num_kv_heads=2,
            head_dim=8, mlp_dim=48, max_seq_len=64)


def tiny(name: str, **overrides) -> config_lib.ModelConfig:
  fields = dict(TINY, **overrides)
  if name == "gemma3_270m":
    fields.update(sliding_window=3, global_every=2)
  return config_lib.get_config(name, **fields)


class TransformerTest(parameterized.TestCase):

  @parameterized.named_parameters(("gemma3", "gemma3_270m"), ("llama", "smollm2_135m"),
                                  ("qwen3", "qwen3_1.7b"), ("untied", "scratch_1m"))
  def test_cached_decoding_equals_full_forward(self, name):
    config = tiny(name, tie_embeddings=name != "scratch_1m", dtype="float32",
                  param_dtype="float32")
    graphdef, params = nnx.split(transformer.create_model(config, seed=1))
    tokens = jax.random.randint(jax.random.key(0), (2, 9), 0, config.vocab_size)
    positions = jnp.broadcast_to(jnp.arange(9), (2, 9))
    full, _ = jax.jit(transformer.forward)(graphdef, params, tokens, positions)
    cache = kv_cache.init_cache(config, 2, 12)
    step = jax.jit(transformer.forward, donate_argnums=(5,))
    chunks, (first, cache) = [], step(graphdef, params, tokens[:, :5], positions[:, :5], None,
                                      cache)
    chunks.append(first)
    for t in range(5, 9):
      logits, cache = step(graphdef, params, tokens[:, t:t + 1], positions[:, t:t + 1], None,
                           cache)
      chunks.append(logits)
    chex.assert_trees_all_close(jnp.concatenate(chunks, axis=1), full, atol=1e-4, rtol=1e-4)
    self.assertEqual(int(cache.index), 9)

  def test_left_padding_does_not_change_logits(self):
    config = tiny("qwen3_1.7b", dtype="float32", param_dtype="float32")
    graphdef, params = nnx.split(transformer.create_model(config))
    tokens = jnp.array([[5, 6, 7, 8]])
    plain, _ = transformer.forward(graphdef, params, tokens, jnp.arange(4)[None])
    padded = jnp.array([[0, 0, 5, 6, 7, 8]])
    mask = padded != 0
    logits, _ = transformer.forward(graphdef, params, padded,
                                    transformer.default_positions(mask), mask)
    chex.assert_trees_all_close(logits[:, 2:], plain, atol=1e-5)

  def test_sliding_window_limits_attention(self):
    # One RoPE base for local and global layers, so that only the window differs.
    config = tiny("gemma3_270m", dtype="float32", param_dtype="float32",
                  local_rope_base=1_000_000.0)
    graphdef, params = nnx.split(transformer.create_model(config))
    tokens = jax.random.randint(jax.random.key(3), (1, 8), 0, config.vocab_size)
    positions = jnp.arange(8)[None]
    windowed, _ = transformer.forward(graphdef, params, tokens, positions)
    global_graph, _ = nnx.split(transformer.create_model(config.replace(sliding_window=None)))
    unwindowed, _ = transformer.forward(global_graph, params, tokens, positions)
    # Identical within the window, different once the window cuts the context.
    chex.assert_trees_all_close(windowed[:, :3], unwindowed[:, :3], atol=1e-5)
    self.assertGreater(float(jnp.abs(windowed[:, 5:] - unwindowed[:, 5:]).max()), 1e-3)

  @parameterized.parameters(dict(remat=True), dict(scan_layers=False))
  def test_remat_and_unrolled_layers_give_the_same_gradients(self, **variant):
    config = tiny("smollm2_135m", dtype="float32", param_dtype="float32")
    graphdef, params = nnx.split(transformer.create_model(config))
    other_graph, _ = nnx.split(transformer.create_model(config.replace(**variant)))
    # Longer than a query block: both models take the block-skipping causal pass.
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (2, 300)))

    def loss(graph, p):
      logits, _ = transformer.forward(graph, p, tokens, jnp.broadcast_to(jnp.arange(300),
                                                                         (2, 300)))
      return jnp.mean(jax.nn.logsumexp(logits, -1))

    chex.assert_trees_all_close(jax.grad(lambda p: loss(other_graph, p))(params),
                                jax.grad(lambda p: loss(graphdef, p))(params), atol=1e-5)

  def test_fused_attention_equals_einsum_attention(self):
    # A sliding window and left padding, so that every part of the visibility rule counts.
    config = tiny("gemma3_270m", dtype="float32", param_dtype="float32")
    graphdef, params = nnx.split(transformer.create_model(config, seed=2))
    fused_graph, _ = nnx.split(transformer.create_model(config.replace(attention="xla")))
    tokens = jax.random.randint(jax.random.key(4), (2, 10), 1, config.vocab_size)
    mask = jnp.arange(10)[None] >= jnp.array([[0], [3]])
    positions = transformer.default_positions(mask)

    def loss(graph, p):
      logits, _ = transformer.forward(graph, p, tokens, positions, mask)
      return jnp.sum(jnp.where(mask, jax.nn.logsumexp(logits, -1), 0.0)), logits

    (_, einsum_logits), einsum_grads = jax.value_and_grad(
        lambda p: loss(graphdef, p), has_aux=True)(params)
    (_, fused_logits), fused_grads = jax.value_and_grad(
        lambda p: loss(fused_graph, p), has_aux=True)(params)
    chex.assert_trees_all_close(fused_logits, einsum_logits, atol=1e-5)
    chex.assert_trees_all_close(fused_grads, einsum_grads, atol=1e-5)
    with self.assertRaisesRegex(ValueError, "attention='flash'.*'cudnn'"):
      config.replace(attention="flash")

  def test_auto_attention_is_einsum_off_gpus_and_cudnn_on_them_in_bf16(self):
    config = tiny("scratch_1m")
    self.assertEqual(config.attention, "auto")
    self.assertIsNone(transformer.fused_attention(config.replace(dtype="bfloat16")))
    self.assertEqual(transformer.fused_attention(config.replace(attention="xla")), "xla")
    with mock.patch.object(jax, "default_backend", return_value="gpu"):
      self.assertEqual(transformer.fused_attention(config.replace(dtype="bfloat16")), "cudnn")
      self.assertIsNone(transformer.fused_attention(config.replace(dtype="float32")))
      self.assertIsNone(transformer.fused_attention(config.replace(attention="einsum",
                                                                   dtype="bfloat16")))

  @parameterized.parameters("scratch_1m", "scratch_10m", "scratch_50m", "scratch_1b",
                            "gemma3_270m", "smollm2_135m", "qwen3_1.7b", "qwen3_4b")
  def test_registry_param_counts(self, name):
    config = config_lib.get_config(name)
    _, abstract = transformer.abstract_model(config)
    self.assertEqual(transformer.param_count(abstract), memory.param_count(config))
    expected = {"scratch_1m": 1.3e6, "scratch_10m": 11e6, "scratch_50m": 52e6,
                "scratch_1b": 1.02e9, "gemma3_270m": 268e6, "smollm2_135m": 135e6,
                "qwen3_1.7b": 1.72e9, "qwen3_4b": 4.02e9}[name]
    np.testing.assert_allclose(memory.param_count(config), expected, rtol=0.1)

  def test_config_json_round_trip_and_errors(self):
    config = config_lib.get_config("gemma3_270m")
    self.assertEqual(config_lib.ModelConfig.from_json(config.to_json()), config)
    with self.assertRaisesRegex(ValueError, "num_kv_heads"):
      config.replace(num_kv_heads=3)
    with self.assertRaisesRegex(KeyError, "registered"):
      config_lib.get_config("gpt5")



def _attention_inputs(rng, b, t, s, n, k, h):
  """Random float32 queries [b, t, n, h], keys and values [b, k, s, h], and a key mask [b, s]
  that hides about one slot in ten."""
  q = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32)
  keys = jnp.asarray(rng.normal(size=(b, k, s, h)), jnp.float32)
  values = jnp.asarray(rng.normal(size=(b, k, s, h)), jnp.float32)
  return q, keys, values, jnp.asarray(rng.random((b, s)) > 0.1)


class BlockedAttentionTest(absltest.TestCase):

  def test_query_blocks_equal_one_block(self):
    b, t, s = 2, 600, 700
    q, keys, values, key_mask = _attention_inputs(np.random.default_rng(0), b, t, s, 4, 2, 16)
    q_slots = jnp.arange(100, 100 + t)
    q_positions = jnp.broadcast_to(q_slots, (b, t))
    k_positions = jnp.broadcast_to(jnp.arange(s), (b, s))
    window = jnp.asarray(300, jnp.int32)
    args = (q, keys, values, q_slots, key_mask, q_positions, k_positions, window, 0.25)
    blocked = transformer.attend(*args)
    whole = transformer._attend_block(*args)  # pylint: disable=protected-access
    np.testing.assert_allclose(blocked, whole, atol=1e-5)

  def test_self_contained_blocks_skip_only_hidden_keys(self):
    b, t = 2, 600
    q, keys, values, key_mask = _attention_inputs(np.random.default_rng(1), b, t, t, 4, 2, 16)
    slots = jnp.arange(t)
    positions = jnp.broadcast_to(slots, (b, t))
    window = jnp.asarray(300, jnp.int32)
    args = (q, keys, values, slots, key_mask, positions, positions, window, 0.25)
    skipping = transformer.attend(*args, self_contained=True)
    whole = transformer._attend_block(*args)  # pylint: disable=protected-access
    np.testing.assert_allclose(skipping, whole, atol=1e-5)
    with self.assertRaisesRegex(ValueError, "as many keys as queries"):
      transformer.attend(q, keys[:, :, :500], values[:, :, :500], slots, key_mask[:, :500],
                         positions, positions[:, :500], window, 0.25, self_contained=True)

  def test_self_contained_blocks_give_the_unblocked_gradients(self):
    rng = np.random.default_rng(2)
    b, t = 1, 520
    q, keys, values, key_mask = _attention_inputs(rng, b, t, t, 2, 1, 8)
    cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
    slots = jnp.arange(t)
    positions = jnp.broadcast_to(slots, (b, t))
    window = jnp.asarray(t, jnp.int32)

    def grads(attention):
      def loss(q, keys, values):
        out = attention(q, keys, values, slots, key_mask, positions, positions, window, 0.3)
        return jnp.sum(out * cotangent)
      return jax.grad(loss, argnums=(0, 1, 2))(q, keys, values)

    skipping = grads(functools.partial(transformer.attend, self_contained=True))
    whole = grads(transformer._attend_block)  # pylint: disable=protected-access
    for name, got, want in zip(("queries", "keys", "values"), skipping, whole):
      np.testing.assert_allclose(got, want, atol=1e-4, err_msg=name)


if __name__ == "__main__":
  absltest.main()
