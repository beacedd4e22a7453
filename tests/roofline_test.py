"""Tests for the roofline arithmetic: FLOPs per token against XLA's own count, key counts,
decode bytes, and the measured ceilings."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from flax import nnx

from autollm_jax import memory
from autollm_jax import roofline
from autollm_jax.model import config as config_lib
from autollm_jax.model import kv_cache
from autollm_jax.model import transformer
from autollm_jax.training import grpo
from autollm_jax.training import optimizer

# One layer: XLA's cost analysis counts a loop body once, whatever its trip count.
SIZES = dict(vocab_size=512, embed_dim=256, num_layers=1, num_heads=4, head_dim=64,
             mlp_dim=1024)
QWEN_LIKE = config_lib.get_config("scratch_1m", num_kv_heads=2, **SIZES)
GEMMA_LIKE = config_lib.get_config("gemma3_270m", num_kv_heads=1, sliding_window=16,
                                   **SIZES)


def xla_flops(fn, *args) -> float:
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  return (analysis if isinstance(analysis, dict) else analysis[0])["flops"]


class FlopsTest(parameterized.TestCase):

  @parameterized.named_parameters(("qwen", QWEN_LIKE), ("gemma", GEMMA_LIKE))
  def test_forward_and_grpo_gradient_match_xla_cost_analysis(self, config):
    batch, seq = 2, 128
    graphdef, params = nnx.split(transformer.create_model(config))
    tokens = jnp.ones((batch, seq), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(seq), (batch, seq))
    # XLA counts every score of the masked [T, T] matrix: the "dense" count.
    expected = roofline.forward_flops_per_token(config, seq, "dense") * batch * seq
    forward = xla_flops(lambda p, t: transformer.forward(graphdef, p, t, positions)[0],
                        params, tokens)
    np.testing.assert_allclose(forward, expected, rtol=0.03)

    loss_fn = grpo.grpo_loss_fn(graphdef, optimizer.default_optimizer_config(
        clip_eps=0.2, kl_coef=0.04, loss_aggregation="token-mean"))
    zeros = jnp.zeros((batch, seq), jnp.float32)
    rollouts = {"tokens": tokens, "input_mask": jnp.ones((batch, seq), bool),
                "loss_mask": zeros + 1.0, "old_logp": zeros, "ref_logp": zeros,
                "advantages": jnp.ones((batch,), jnp.float32)}
    gradient = xla_flops(jax.grad(lambda p, b: loss_fn(p, b)[0]), params, rollouts)
    np.testing.assert_allclose(
        gradient, roofline.train_flops_per_token(config, seq, "dense") * batch * seq,
        rtol=0.03)

  def test_causal_keys_respect_windows(self):
    config = GEMMA_LIKE.replace(num_layers=2, sliding_window=3, global_every=2)
    self.assertFalse(config.is_global_layer(0))
    self.assertEqual(roofline.mean_keys(config, 0, 8), (1 + 2 + 3 * 6) / 8)
    self.assertEqual(roofline.mean_keys(config, 1, 8), 36 / 8)  # global: (T + 1) / 2
    self.assertEqual(roofline.mean_keys(config, 0, 8, "dense"), 8.0)
    dense = roofline.forward_flops_per_token(config, 8, "dense")
    causal = roofline.forward_flops_per_token(config, 8)
    self.assertAlmostEqual(dense - causal, 4 * 4 * 64 * ((8 - 21 / 8) + (8 - 36 / 8)))

  def test_matmul_params_are_the_parameters_less_norms(self):
    config = config_lib.get_config("scratch_1b")
    norms = config.num_layers * (2 * config.embed_dim + 2 * config.head_dim) + config.embed_dim
    self.assertEqual(roofline.matmul_params(config), memory.param_count(config) - norms)

  def test_decode_bytes_are_weights_and_cache(self):
    config = QWEN_LIKE.replace(dtype="bfloat16", param_dtype="bfloat16")
    cache = kv_cache.init_cache(config, 3, 20)
    self.assertEqual(roofline.decode_bytes_per_step(config, 3, 20),
                     2 * memory.param_count(config) + cache.k.nbytes + cache.v.nbytes)


class CeilingsTest(absltest.TestCase):

  def test_measured_rates_are_positive(self):
    self.assertGreater(roofline.matmul_tflops(size=128, reps=2), 0.0)
    self.assertGreater(roofline.copy_gbps(nbytes=2**20, reps=2), 0.0)


if __name__ == "__main__":
  absltest.main()
