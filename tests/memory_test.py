"""Tests of the memory estimate against the real sizes of parameters and KV cache."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax import memory
from autollm_jax.model import config as config_lib
from autollm_jax.model import kv_cache, transformer


class MemoryTest(absltest.TestCase):

  def test_param_and_cache_bytes_match_allocations(self):
    config = config_lib.get_config("scratch_1m")
    _, abstract = transformer.abstract_model(config)
    est = memory.estimate(config, batch_size=4, seq_len=128)
    self.assertEqual(est.param_bytes, sum(x.size * x.dtype.itemsize
                                          for x in jax.tree_util.tree_leaves(abstract)))
    cache = kv_cache.cache_shape(config, 4, 128)
    self.assertEqual(est.kv_cache_bytes, sum(x.size * x.dtype.itemsize
                                             for x in jax.tree_util.tree_leaves(cache)
                                             if x.ndim == 5))
    self.assertEqual(est.optimizer_bytes, 12 * est.params)

  def test_tree_bytes_counts_numpy_and_jax_leaves(self):
    tree = {"a": np.zeros((3, 5), np.int32), "b": [jnp.ones(7, jnp.bfloat16), np.bool_(True)]}
    self.assertEqual(memory.tree_bytes(tree), 3 * 5 * 4 + 7 * 2 + 1)

  def test_remat_saves_activations_and_scales_with_batch(self):
    config = config_lib.get_config("qwen3_1.7b")
    small = memory.estimate(config, batch_size=1, seq_len=1024)
    large = memory.estimate(config, batch_size=8, seq_len=1024)
    self.assertLess(small.activation_remat_bytes, small.activation_bytes / 2)
    self.assertAlmostEqual(large.activation_bytes / small.activation_bytes, 8, places=6)
    self.assertEqual(large.kv_cache_bytes, 8 * small.kv_cache_bytes)
    self.assertEqual(small.param_bytes, 2 * small.params)  # bfloat16
    self.assertIn("KV cache", small.summary())

  def test_sliding_window_bounds_attention_memory(self):
    gemma = config_lib.get_config("gemma3_270m")
    windowed = memory.estimate(gemma, 1, 8192)
    full = memory.estimate(gemma.replace(sliding_window=None), 1, 8192)
    self.assertLess(windowed.activation_bytes, full.activation_bytes)


if __name__ == "__main__":
  absltest.main()
