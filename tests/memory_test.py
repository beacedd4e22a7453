"""Tests of the memory estimate against the real sizes of parameters, KV cache and the
attention scores a traced pass makes."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax import memory
from autollm_jax.model import config as config_lib
from autollm_jax.model import kv_cache, transformer


def _exp_elements(jaxpr) -> int:
  """Elements of the outputs of every `exp` in a jaxpr, its sub-jaxprs included."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "exp":
      total += sum(int(np.prod(v.aval.shape)) for v in eqn.outvars)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          total += _exp_elements(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          total += _exp_elements(sub)
  return total


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

  def test_attention_scores_count_what_the_attention_makes(self):
    # The independent count: the elements of every softmax exponential in the traced pass
    # (the scores, one per visible or masked query-key pair).
    config = config_lib.get_config("gemma3_270m")  # local and global layers alike
    b, n, h, kv = 2, config.num_heads, 8, config.num_kv_heads
    for t in (200, 256, 600, 1220):
      for fused in (None, "xla"):
        q = jnp.zeros((b, t, n, h))
        k = v = jnp.zeros((b, kv, t, h))
        slots = jnp.arange(t)
        positions = jnp.broadcast_to(slots, (b, t))
        pass_jaxpr = jax.make_jaxpr(
            lambda q, k, v: transformer.attend(
                q, k, v, slots, jnp.ones((b, t), bool), positions, positions,
                jnp.int32(config.sliding_window), 0.1, fused, self_contained=True))(q, k, v)
        self.assertEqual(memory.attention_scores(config, b, t, fused),
                         _exp_elements(pass_jaxpr.jaxpr), (t, fused))
    self.assertEqual(memory.attention_scores(config, 2, 1220, "cudnn"), 2 * n * 1220)
    # 1220 tokens in query blocks of 256: 0.601 of the T x T pairs.
    self.assertAlmostEqual(memory.attention_scores(config, 1, 1220, None) / (n * 1220**2),
                           0.601, places=3)
  def test_compiled_footprint_reads_xla_s_sizes(self):
    x, y = jnp.ones((64, 32)), jnp.ones((16,), jnp.int32)
    step = jax.jit(lambda x, y: (x * 2, y.sum()), donate_argnums=0)
    footprint = memory.compiled_footprint(step.lower(x, y).compile())
    self.assertEqual(footprint.arguments, 64 * 32 * 4 + 16 * 4)
    # The two results, and at most a small index table of the output tuple.
    self.assertBetween(footprint.outputs, 64 * 32 * 4 + 4, 64 * 32 * 4 + 4 + 64)
    self.assertEqual(footprint.aliased, 64 * 32 * 4)  # x * 2 written over the donated x
    self.assertIn("per device", footprint.summary("step"))


if __name__ == "__main__":
  absltest.main()
