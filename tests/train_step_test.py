"""Tests for the shared optimizer step: accumulation equals one big batch, loss decreases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from flax import nnx

from autollm_jax.model import config as model_config
from autollm_jax.model import transformer
from autollm_jax.training import losses
from autollm_jax.training import optimizer as optimizer_lib
from autollm_jax.training import train_step

TINY = model_config.get_config("scratch_1m", vocab_size=64, embed_dim=32, num_layers=2,
                               num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64)


def sft_loss_fn(graphdef):
  def loss_fn(params, batch):
    tokens, mask = batch["tokens"], batch["loss_mask"]
    logits, _ = transformer.forward(graphdef, params, tokens,
                                    jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape))
    return losses.sft_loss(logits, tokens, mask), {"tokens": mask.sum()}
  return loss_fn


class TrainStepTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.graphdef, self.params = nnx.split(transformer.create_model(TINY, seed=0))
    rng = np.random.default_rng(0)
    self.batch = {"tokens": jnp.asarray(rng.integers(0, 64, (4, 12)), jnp.int32),
                  "loss_mask": jnp.ones((4, 12), jnp.float32).at[:, :5].set(0.0)}

  def test_accumulated_step_equals_full_batch_step(self):
    opt = optax.sgd(0.1)
    step = jax.jit(train_step.make_train_step(sft_loss_fn(self.graphdef), opt))
    full, m_full = step(train_step.init_state(self.params, opt),
                        train_step.split_microbatches(self.batch, 1))
    accum, m_accum = step(train_step.init_state(self.params, opt),
                          train_step.split_microbatches(self.batch, 2))
    chex_leaves = zip(jax.tree_util.tree_leaves(full.params),
                      jax.tree_util.tree_leaves(accum.params))
    for a, b in chex_leaves:
      np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(m_full["loss"], m_accum["loss"], rtol=1e-5)
    self.assertEqual(int(accum.step), 1)

  def test_loss_decreases_with_adamw(self):
    opt = optimizer_lib.make_optimizer(optimizer_lib.default_optimizer_config(
        learning_rate=1e-2, warmup_steps=2, total_steps=30))
    step = jax.jit(train_step.make_train_step(sft_loss_fn(self.graphdef), opt),
                   donate_argnums=0)
    state = train_step.init_state(self.params, opt)
    batch = train_step.split_microbatches(self.batch, 2)
    first = None
    for _ in range(30):
      state, metrics = step(state, batch)
      first = first if first is not None else float(metrics["loss"])
    self.assertLess(float(metrics["loss"]), 0.5 * first)
    self.assertEqual(float(metrics["tokens"]), 4 * 7 / 2)

  def test_indivisible_batch_is_a_clear_error(self):
    with self.assertRaisesRegex(ValueError, "batch size 4 is not a multiple of "
                                "grad_accum_steps=3"):
      train_step.split_microbatches(self.batch, 3)


if __name__ == "__main__":
  absltest.main()
