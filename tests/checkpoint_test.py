"""Tests of Orbax checkpoints: round trip (onto another mesh too), wrong model, corruption."""

from pathlib import Path

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from autollm_jax import checkpoint, sharding
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

CONFIG = config_lib.get_config("smollm2_135m", vocab_size=64, embed_dim=32, num_layers=2,
                               num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)
BLOB = b"tokenizer \x00\xff bytes"


class CheckpointTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    mesh = sharding.make_mesh(fsdp=8, tensor=1)
    _, params = nnx.split(transformer.create_model(CONFIG, seed=3))
    cls.params = sharding.shard_params(params, mesh)
    cls.optimizer = optax.adamw(1e-3)
    pure = nnx.to_pure_dict(cls.params)
    grads = jax.tree_util.tree_map(jnp.ones_like, pure)
    cls.opt_state = cls.optimizer.update(grads, cls.optimizer.init(pure), pure)[1]

  def setUp(self):
    super().setUp()
    self.dir = Path(self.create_tempdir().full_path) / "ckpt"

  def save(self, manager, step=7):
    self.assertTrue(manager.save(step, self.params, self.opt_state, CONFIG, BLOB))

  def test_round_trip_onto_another_mesh(self):
    manager = checkpoint.CheckpointManager(self.dir)
    self.save(manager)
    other = sharding.make_mesh(fsdp=2, tensor=4)
    target = jax.eval_shape(self.optimizer.init, nnx.to_pure_dict(self.params))
    restored = checkpoint.CheckpointManager(self.dir).restore_latest(
        expected_config=CONFIG, mesh=other, opt_state_target=target)
    self.assertEqual(restored.step, 7)
    self.assertEqual(restored.config, CONFIG)
    self.assertEqual(restored.tokenizer_blob, BLOB)
    chex.assert_trees_all_close(nnx.to_pure_dict(restored.params),
                                jax.device_get(nnx.to_pure_dict(self.params)))
    chex.assert_trees_all_close(restored.opt_state, jax.device_get(self.opt_state))
    up = restored.params["blocks"]["up_proj"][...]
    self.assertTrue(up.sharding.is_equivalent_to(
        NamedSharding(other, P(None, "fsdp", "tensor")), 3))

  def test_restore_without_mesh_or_optimizer(self):
    manager = checkpoint.CheckpointManager(self.dir)
    self.save(manager, step=1)
    self.save(manager, step=2)
    restored = manager.restore(1)
    self.assertEqual(restored.step, 1)
    self.assertIsNone(restored.opt_state)
    self.assertLen(restored.params["embed"][...].sharding.device_set, 1)
    self.assertEqual(manager.all_steps(), [1, 2])

  def test_other_model_shape_is_a_clear_error(self):
    manager = checkpoint.CheckpointManager(self.dir)
    self.save(manager)
    with self.assertRaisesRegex(checkpoint.CheckpointError, "holds model 'smollm2_135m'"):
      manager.restore_latest(expected_config=CONFIG.replace(name="wide", embed_dim=64))

  def test_corrupt_checkpoint_is_a_clear_error(self):
    manager = checkpoint.CheckpointManager(self.dir)
    self.save(manager)
    for path in (self.dir / "7" / "params").rglob("*"):
      if path.is_file():
        path.write_bytes(b"garbage")
    with self.assertRaisesRegex(checkpoint.CheckpointError, "corrupt"):
      checkpoint.CheckpointManager(self.dir).restore_latest()

  def test_missing_checkpoint_is_a_clear_error(self):
    with self.assertRaisesRegex(checkpoint.CheckpointError, "no checkpoint found"):
      checkpoint.CheckpointManager(self.dir).restore_latest()
    manager = checkpoint.CheckpointManager(self.dir)
    self.save(manager)
    with self.assertRaisesRegex(checkpoint.CheckpointError, "available steps"):
      manager.restore(3)


if __name__ == "__main__":
  absltest.main()
