"""Tests for the benchmark timings: the GRPO train step and the decode loop run at tiny sizes
and report consistent numbers."""

import jax
from absl.testing import absltest
from flax import nnx

from autollm_jax import benchmarks
from autollm_jax import roofline
from autollm_jax import sharding
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

TINY = config_lib.get_config("scratch_1m", vocab_size=64, embed_dim=32, num_layers=2,
                             num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64,
                             dtype="bfloat16")


class BenchmarksTest(absltest.TestCase):

  def test_grpo_step_timing(self):
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    timing = benchmarks.time_grpo_step(TINY.replace(remat=True), batch_size=4, seq_len=16,
                                       grad_accum=2, mesh=mesh, steps=2)
    self.assertGreater(timing.seconds, 0.0)
    self.assertEqual(timing.tokens, 64)
    self.assertEqual(timing.model_flops, 64 * roofline.train_flops_per_token(TINY, 16))

  def test_grpo_batch_shapes(self):
    batch = benchmarks.grpo_batch(64, 3, 10)
    self.assertEqual({k: v.shape for k, v in batch.items()},
                     {"tokens": (3, 10), "input_mask": (3, 10), "loss_mask": (3, 10),
                      "old_logp": (3, 10), "ref_logp": (3, 10), "advantages": (3,)})
    self.assertEqual(batch["loss_mask"].sum(), 15)
    self.assertLess(batch["tokens"].max(), 64)

  def test_decode_timing(self):
    _, params = nnx.split(transformer.create_model(TINY))
    timing = benchmarks.time_decode(TINY, params, batch_size=2, prompt_len=5, new_tokens=4,
                                    reps=1)
    self.assertGreater(timing.step_seconds, 0.0)
    self.assertGreater(timing.prefill_seconds, 0.0)
    self.assertEqual(timing.read_bytes, roofline.decode_bytes_per_step(TINY, 2, 9))


if __name__ == "__main__":
  absltest.main()
