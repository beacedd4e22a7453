"""The jitted optimizer step shared by SFT and GRPO: gradient accumulation over microbatches,
an optax update, donated state.

A step takes a TrainState and a batch whose arrays have a leading microbatch axis
[A, B / A, ...]; it scans the loss's gradient over the A microbatches, averages them, and
applies one optimizer update. Parameters stay in their param dtype (fp32 master weights); the
model computes in its config's dtype (bf16 when asked).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from autollm_jax.sharding import FSDP

LossFn = Callable[[nnx.State, Any], tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar; params: the model's parameter state; opt_state: optax state."""

  step: jax.Array
  params: nnx.State
  opt_state: optax.OptState


def init_state(params: nnx.State, optimizer: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params))


def abstract_state(params: nnx.State, optimizer: optax.GradientTransformation
                   ) -> TrainState:
  """The TrainState's shapes and shardings (jax.ShapeDtypeStruct leaves), allocating nothing.

  Args:
    params: abstract parameters whose leaves carry their shardings.
    optimizer: the optax transformation; its state's shardings follow from the parameters'.
  """
  compiled = jax.jit(functools.partial(init_state, optimizer=optimizer)).lower(params).compile()
  shapes = jax.eval_shape(functools.partial(init_state, optimizer=optimizer), params)
  return jax.tree_util.tree_map(
      lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes, compiled.output_shardings)


def split_microbatches(batch: Any, accum_steps: int) -> Any:
  """Reshapes every array [B, ...] of a batch pytree to [accum_steps, B / accum_steps, ...]."""

  def split(x):
    if x.shape[0] % accum_steps:
      raise ValueError(f"batch size {x.shape[0]} is not a multiple of grad_accum_steps="
                       f"{accum_steps}")
    return x.reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:])

  return jax.tree_util.tree_map(split, batch)


def to_global(batch: Any, sharding: jax.sharding.Sharding) -> Any:
  """Host arrays (the same whole batch on every process) as global jax.Arrays laid out by
  `sharding`: each process contributes the shards its devices hold, so this works on one
  host and on many."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), batch)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation
                    ) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
  """A pure step function (jit it with shardings and donate_argnums=0).

  Args:
    loss_fn: (params, microbatch) -> (scalar loss, dict of scalar metrics).
    optimizer: the optax transformation.
  Returns:
    step(state, batch) -> (new state, metrics averaged over microbatches, plus grad_norm).
    `batch` leaves have a leading microbatch axis (see split_microbatches).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: Any):
    accum_steps = jax.tree_util.tree_leaves(batch)[0].shape[0]

    def accumulate(carry, microbatch):
      (loss, metrics), grads = grad_fn(state.params, microbatch)
      carry_grads, carry_metrics = carry
      carry_grads = jax.tree_util.tree_map(jnp.add, carry_grads, grads)
      carry_metrics = jax.tree_util.tree_map(jnp.add, carry_metrics, dict(metrics, loss=loss))
      return (carry_grads, carry_metrics), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    metric_shapes = jax.eval_shape(lambda: grad_fn(
        state.params, jax.tree_util.tree_map(lambda x: x[0], batch))[0])
    zero_metrics = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), dict(metric_shapes[1], loss=metric_shapes[0]))
    (grads, metrics), _ = jax.lax.scan(accumulate, (zeros, zero_metrics), batch)
    grads = jax.tree_util.tree_map(lambda g: g / accum_steps, grads)
    metrics = jax.tree_util.tree_map(lambda m: m / accum_steps, metrics)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


def microbatch_sharding(mesh: Mesh) -> NamedSharding:
  """Batch arrays [A, B / A, ...] (see split_microbatches): each microbatch's rows split over
  "fsdp"."""
  return NamedSharding(mesh, P(None, FSDP))


def jit_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                   state: TrainState, mesh: Mesh
                   ) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
  """`make_train_step` jitted for `mesh`: the state (arrays or ShapeDtypeStructs with
  shardings) keeps its shardings and is donated, the batch is laid out by
  microbatch_sharding, the metrics are replicated."""
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  return jax.jit(make_train_step(loss_fn, optimizer), donate_argnums=0,
                 in_shardings=(shardings, microbatch_sharding(mesh)),
                 out_shardings=(shardings, NamedSharding(mesh, P())))
