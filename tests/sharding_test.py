"""Tests on 8 fake CPU devices: sharded forward and sampling equal the unsharded ones."""

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from autollm_jax import sampler as sampler_lib
from autollm_jax import sharding
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

CONFIG = config_lib.get_config("qwen3_1.7b", vocab_size=64, embed_dim=32, num_layers=2,
                               num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64,
                               dtype="float32", param_dtype="float32")


class ShardingTest(parameterized.TestCase):

  def test_eight_devices(self):
    self.assertLen(jax.devices(), 8)

  def test_rules_shard_by_name_and_skip_indivisible_dims(self):
    mesh = sharding.make_mesh(fsdp=2, tensor=4)
    self.assertEqual(sharding.partition_spec("blocks.q_proj", (2, 32, 4, 8), mesh),
                     P(None, "fsdp", "tensor", None))
    # 2 kv heads do not split 4 ways: that dimension stays replicated.
    self.assertEqual(sharding.partition_spec("blocks.k_proj", (2, 32, 2, 8), mesh),
                     P(None, "fsdp", None, None))
    self.assertEqual(sharding.partition_spec("embed", (64, 32), mesh), P("tensor", "fsdp"))
    self.assertEqual(sharding.partition_spec("blocks.attn_norm.scale", (2, 32), mesh),
                     P(None, None))

  @parameterized.parameters((8, 1), (2, 4), (4, 2))
  def test_sharded_forward_equals_unsharded(self, fsdp, tensor):
    mesh = sharding.make_mesh(fsdp=fsdp, tensor=tensor)
    graphdef, params = nnx.split(transformer.create_model(CONFIG, seed=4))
    tokens = jax.random.randint(jax.random.key(0), (8, 6), 0, CONFIG.vocab_size)
    positions = jnp.broadcast_to(jnp.arange(6), (8, 6))
    expected, _ = jax.jit(transformer.forward)(graphdef, params, tokens, positions)
    shardings = sharding.param_shardings(params, mesh)
    data = sharding.batch_sharding(mesh)
    fwd = jax.jit(lambda p, t, pos: transformer.forward(graphdef, p, t, pos)[0],
                  in_shardings=(shardings, data, data), out_shardings=sharding.batch_sharding(
                      mesh, 3))
    sharded_params = sharding.shard_params(params, mesh)
    q_proj = sharded_params["blocks"]["q_proj"][...]
    self.assertEqual(q_proj.sharding.spec, P(None, "fsdp", "tensor", None))
    got = fwd(sharded_params, jax.device_put(tokens, data), jax.device_put(positions, data))
    self.assertEqual(got.sharding.spec, P("fsdp", None, None))
    chex.assert_trees_all_close(got, expected, atol=1e-5, rtol=1e-5)

  def test_sharded_sampling_equals_unsharded(self):
    mesh = sharding.make_mesh(fsdp=4, tensor=2)
    graphdef, params = sharding.init_sharded(CONFIG, mesh, seed=5)
    self.assertEqual(params["blocks"]["up_proj"][...].sharding.spec,
                     P(None, "fsdp", "tensor"))
    prompts = [[3, 4, 5], [6], [7, 8], [9, 10, 11, 12]]
    sampling = sampler_lib.SamplingParams(max_new_tokens=5, temperature=1.0, top_k=8)
    plain = sampler_lib.Sampler(graphdef, CONFIG, pad_id=0)(
        jax.device_get(params), prompts, sampling, key=jax.random.key(1))
    sharded_sampler = sampler_lib.Sampler(
        graphdef, CONFIG, pad_id=0, cache_sharding=sharding.cache_sharding(mesh, CONFIG, 4))
    got = sharded_sampler(params, prompts, sampling, key=jax.random.key(1))
    self.assertTrue(got.cache.k.sharding.is_equivalent_to(
        NamedSharding(mesh, P(None, "fsdp", "tensor", None, None)), 5))
    chex.assert_trees_all_equal(got.tokens, plain.tokens)
    chex.assert_trees_all_close(got.logprobs, plain.logprobs, atol=1e-5)

  def test_bad_mesh_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "devices"):
      sharding.make_mesh(fsdp=3, tensor=2)

  def test_single_host_does_not_initialize_distributed(self):
    self.assertFalse(sharding.initialize_distributed())


if __name__ == "__main__":
  absltest.main()
