"""Policy distillation: supervised fine-tuning on teacher trajectories, agent tokens only.

`train` runs the jitted, sharded train step over length-bucketed batches, logs metrics
(loss, tokens/s, learning rate) every `log_every` steps, writes Orbax checkpoints every
`checkpoint_every` steps, and resumes from the newest checkpoint in its directory: batches are
a function of the step, so a resumed run ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax import memory
from autollm_jax import sharding as sharding_lib
from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.training import batching
from autollm_jax.training import losses
from autollm_jax.training import metrics as metrics_lib
from autollm_jax.training import optimizer as optimizer_lib
from autollm_jax.training import resume
from autollm_jax.training import train_step


def sft_loss_fn(graphdef: nnx.GraphDef):
  """(params, batch) -> (mean NLL of the agent tokens, {"tokens": agent tokens})."""

  def loss_fn(params, batch):
    tokens = batch["tokens"]
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    logits, _ = transformer.forward(graphdef, params, tokens, positions, batch["input_mask"])
    return losses.sft_loss(logits, tokens, batch["loss_mask"]), {
        "tokens": jnp.sum(batch["loss_mask"])}

  return loss_fn


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          sequences: Sequence[np.ndarray], loss_masks: Sequence[np.ndarray],
          model_config: ModelConfig, tokenizer_blob: bytes, pad_id: int, mesh: Mesh,
          init_params: nnx.State | None = None, seed: int = 0) -> nnx.State:
  """Trains (or resumes training) a policy by SFT; returns the final parameters.

  Args:
    config: the `sft` fields of a training config (batch_size, grad_accum_steps, total_steps,
      optimizer fields, log_every, checkpoint_every, optional debug_fail_at_step).
    workdir: checkpoints go to `<workdir>/checkpoints`, metrics to `<workdir>/metrics.jsonl`.
    sequences, loss_masks: the tokenized trajectories (see autollm_jax.trajectories).
    model_config: the policy's architecture.
    tokenizer_blob: saved with every checkpoint.
    pad_id: the padding token.
    mesh: the device mesh ("fsdp" splits the batch and the parameters).
    init_params: starting parameters (pretrained); None starts from a random init.
    seed: initialisation and batch-order seed.
  """
  workdir = pathlib.Path(workdir)
  optimizer = optimizer_lib.make_optimizer(config)
  graphdef, params = sharding_lib.init_sharded(model_config, mesh, seed)
  if init_params is not None:
    params = sharding_lib.shard_params(init_params, mesh)
  state = jax.jit(train_step.init_state, static_argnums=1)(params, optimizer)
  manager = checkpoint_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=2)
  state = resume.resume(manager, state, model_config, mesh)

  accum = config.grad_accum_steps
  batch_sharding = train_step.microbatch_sharding(mesh)
  step_fn = train_step.jit_train_step(sft_loss_fn(graphdef), optimizer, state, mesh)
  lengths = batching.bucket_lengths(max(len(s) for s in sequences))
  batches = batching.BucketedBatches(sequences, loss_masks, config.batch_size, lengths, pad_id,
                                     seed)
  schedule = optimizer_lib.learning_rate_schedule(config)
  writer = metrics_lib.MetricsWriter(workdir, "sft")

  step = int(state.step)
  if step < config.total_steps:
    # The longest bucket's step, compiled now (its first batch reuses the executable): what
    # the run needs per device, before the first step allocates it.
    shape = (config.batch_size, lengths[-1])
    longest = {"tokens": np.zeros(shape, np.int32), "loss_mask": np.zeros(shape, np.float32),
               "input_mask": np.zeros(shape, bool)}
    footprint = memory.compiled_footprint(step_fn.lower(state, train_step.to_global(
        train_step.split_microbatches(longest, accum), batch_sharding)).compile())
    if footprint is not None:
      logging.info("%s", footprint.summary(
          f"SFT step at {config.batch_size} x {lengths[-1]} tokens"))
  window_start, window_tokens = time.perf_counter(), 0
  while step < config.total_steps:
    batch = batches.batch(step)
    arrays = {"tokens": batch.tokens, "loss_mask": batch.loss_mask,
              "input_mask": batch.input_mask}
    state, metrics = step_fn(state, train_step.to_global(
        train_step.split_microbatches(arrays, accum), batch_sharding))
    step += 1
    window_tokens += int(batch.input_mask.sum())
    if step % config.log_every == 0 or step == config.total_steps:
      loss = float(metrics["loss"])  # blocks: the timing below includes the step
      elapsed = time.perf_counter() - window_start
      writer.write(step, {"loss": loss, "grad_norm": float(metrics["grad_norm"]),
                          "learning_rate": float(schedule(step - 1)),
                          "tokens_per_s": window_tokens / elapsed})
      window_start, window_tokens = time.perf_counter(), 0
    if step % config.checkpoint_every == 0 or step == config.total_steps:
      manager.save(step, state.params, state.opt_state, model_config, tokenizer_blob,
                   force=True)
    resume.check_injected_failure(config, step)
  manager.close()
  return state.params
