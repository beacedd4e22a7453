"""Resuming a trainer from its newest checkpoint, and failure injection to test that it does."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax.model.config import ModelConfig
from autollm_jax.training import train_step


class InjectedFailure(RuntimeError):
  """Raised by a trainer at its config's `debug_fail_at_step`, to test crash recovery."""


def check_injected_failure(config, step: int) -> None:
  """Raises InjectedFailure when `step` is the config's debug_fail_at_step (0: never)."""
  if step == config.get("debug_fail_at_step", 0):
    raise InjectedFailure(f"debug_fail_at_step={step}")


def resume(manager: checkpoint_lib.CheckpointManager, state: train_step.TrainState,
           model_config: ModelConfig, mesh: Mesh, steps_per_checkpoint_step: int = 1
           ) -> train_step.TrainState:
  """`state` replaced by the newest checkpoint's parameters and optimizer state, placed with
  the same shardings as `state` (or `state` itself when there is no checkpoint).

  Args:
    manager: the trainer's checkpoint manager.
    state: a freshly initialised state (its shapes and shardings are the restore target).
    model_config: the policy's config; a checkpoint of another shape is an error.
    mesh: the device mesh.
    steps_per_checkpoint_step: optimizer steps per unit of the checkpoint's step number.
  """
  if manager.latest_step() is None:
    return state
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  restored = manager.restore_latest(
      expected_config=model_config, mesh=mesh,
      opt_state_target=jax.tree_util.tree_map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
          state.opt_state))
  return jax.device_put(train_step.TrainState(
      step=jnp.asarray(restored.step * steps_per_checkpoint_step, jnp.int32),
      params=restored.params, opt_state=restored.opt_state), shardings)
