"""Tests for the SFT trainer: it learns, and a crashed run resumes to the same parameters."""

import jax
import ml_collections
import numpy as np
from absl.testing import absltest

from autollm_jax import sharding
from autollm_jax.model import config as model_config
from autollm_jax.training import metrics as metrics_lib
from autollm_jax.training import optimizer
from autollm_jax.training import resume
from autollm_jax.training import sft

TINY = model_config.get_config("scratch_1m", vocab_size=32, embed_dim=32, num_layers=2,
                               num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64)


def data(n=24, seed=0):
  """Sequences whose agent part repeats the prompt's tokens: learnable by copying."""
  rng = np.random.default_rng(seed)
  seqs, masks = [], []
  for _ in range(n):
    prompt = rng.integers(4, 32, rng.integers(3, 8))
    seqs.append(np.concatenate([[2], prompt, [1], prompt, [3]]))
    masks.append(np.concatenate([np.zeros(len(prompt) + 2), np.ones(len(prompt) + 1)]))
  return seqs, masks


def sft_config(**overrides):
  c = optimizer.default_optimizer_config(learning_rate=1e-2, warmup_steps=3, total_steps=12)
  c.update(dict(batch_size=8, grad_accum_steps=2, log_every=3, checkpoint_every=4))
  c.update(overrides)
  return ml_collections.ConfigDict(c)


class SftTest(absltest.TestCase):

  def run_sft(self, workdir, mesh, **overrides):
    seqs, masks = data()
    return sft.train(sft_config(**overrides), workdir, seqs, masks, TINY, b"tok", pad_id=0,
                     mesh=mesh, seed=1)

  def test_resume_after_crash_equals_uninterrupted(self):
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    full = self.run_sft(self.create_tempdir().full_path, mesh)
    crashed = self.create_tempdir().full_path
    with self.assertRaises(resume.InjectedFailure):
      self.run_sft(crashed, mesh, debug_fail_at_step=6)  # last checkpoint: step 4
    resumed = self.run_sft(crashed, mesh)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = metrics_lib.read_metrics(crashed, "sft")
    self.assertEqual([r["step"] for r in records], [3, 6, 6, 9, 12])  # 5, 6 rerun from 4
    self.assertLess(records[-1]["loss"], records[0]["loss"])
    self.assertGreater(records[-1]["tokens_per_s"], 0)

  def test_sharded_over_8_devices_matches_one_device(self):
    one = self.run_sft(self.create_tempdir().full_path,
                       sharding.make_mesh(devices=jax.devices()[:1]), total_steps=4)
    eight = self.run_sft(self.create_tempdir().full_path, sharding.make_mesh(fsdp=4, tensor=2),
                         total_steps=4)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(eight)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)


if __name__ == "__main__":
  absltest.main()
