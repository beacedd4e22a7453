"""Multi-turn GRPO: rollouts on the device, group-normalized advantages, clipped policy
gradient with a k3 KL penalty to the reference (distilled) policy, over agent tokens only.

One iteration: pick `experiments_per_batch` train experiments (from the seed and the
iteration, so a resumed run picks the same), play `group_size` episodes of each with the
current policy (`autollm_jax.rollout`), score the log-probabilities of the sampled tokens
under the current ("old") and the reference policy, then run `epochs` passes of
`minibatches` optimizer steps on the GRPO loss, over the agent's tokens where the action
grammar left a choice (`Rollout.choice_mask`). Checkpoints every `checkpoint_every`
iterations hold the parameters and optimizer state; a crashed run resumes from the newest.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax import env as env_lib
from autollm_jax import rollout as rollout_lib
from autollm_jax import sharding as sharding_lib
from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.training import grpo_loss
from autollm_jax.training import losses
from autollm_jax.training import metrics as metrics_lib
from autollm_jax.training import optimizer as optimizer_lib
from autollm_jax.training import resume
from autollm_jax.training import train_step


def sequence_log_probs(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array,
                       input_mask: jax.Array) -> jax.Array:
  """float32[B, L] log p(token | context) of every token of rollout buffers."""
  positions = transformer.default_positions(input_mask)
  logits, _ = transformer.forward(graphdef, params, tokens, positions, input_mask)
  return losses.token_log_probs(logits, tokens)


# One compilation cache for every trainer of a graph (the rl and rl_only stages).
_jitted_sequence_log_probs = jax.jit(sequence_log_probs, static_argnums=0)


def grpo_loss_fn(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict):
  """(params, batch) -> (GRPO loss, metrics) on a minibatch of scored rollouts."""

  def loss_fn(params, batch):
    logp = sequence_log_probs(graphdef, params, batch["tokens"], batch["input_mask"])
    return grpo_loss.grpo_loss(logp, batch["old_logp"], batch["ref_logp"],
                               batch["advantages"], batch["loss_mask"], config.clip_eps,
                               config.kl_coef, config.loss_aggregation)

  return loss_fn


def iteration_experiments(num_experiments: int, per_batch: int, seed: int,
                          iteration: int) -> np.ndarray:
  """int32[per_batch] experiment ids for one iteration (a function of seed and iteration)."""
  rng = np.random.default_rng([seed, iteration])
  return rng.choice(num_experiments, per_batch, replace=per_batch > num_experiments
                    ).astype(np.int32)


def used_length(input_mask: np.ndarray, step: int = 128) -> int:
  """The buffer length that holds every row's tokens, rounded up to a multiple of `step`
  (capped at the buffer's length): rollout buffers are sized for the longest possible
  episode, and scoring and training on the unused tail would only cost time."""
  columns = np.flatnonzero(np.asarray(input_mask).any(axis=0))
  used = int(columns[-1]) + 1 if columns.size else 1
  return min(-(-used // step) * step, input_mask.shape[1])


def parsed_fraction(played: rollout_lib.Rollout, budgets: np.ndarray) -> float:
  """The fraction of trials (within each episode's budget) whose action parsed."""
  history = np.asarray(played.history)
  within = np.arange(history.shape[1]) < np.asarray(budgets)[:, None]
  return float(np.mean(history[within] >= 0))


class GrpoTrainer:
  """Holds the jitted pieces of GRPO for one policy graph, environment and mesh (the
  pipeline's rl and rl_only stages share one, and so compile once)."""

  def __init__(self, config: ml_collections.ConfigDict, model_config: ModelConfig,
               graphdef: nnx.GraphDef, env_params: env_lib.EnvParams,
               prompts: Sequence[Sequence[int]], pad_id: int, stop_id: int, mesh: Mesh):
    """
    Args:
      config: the `rl` fields of a training config (group_size, experiments_per_batch,
        iterations, epochs, minibatches, grad_accum_steps, clip_eps, kl_coef,
        loss_aggregation, turn_tokens, think_tokens, temperature, top_k, top_p, optimizer
        fields, log_every, checkpoint_every).
      model_config, graphdef: the policy's architecture.
      env_params: the train experiments' environment.
      prompts: the token ids of each experiment's prompt (index = experiment id).
      pad_id, stop_id: padding and end-of-turn tokens.
      mesh: the device mesh (episodes split over "fsdp").
    """
    self.config = config
    self.graphdef = graphdef
    self.model_config = model_config
    self.env_params = jax.device_put(env_params)
    self.prompts = [list(p) for p in prompts]
    self.pad_id = pad_id
    self.mesh = mesh
    self.optimizer = optimizer_lib.make_optimizer(config)
    self.rollout = rollout_lib.jit_rollout(
        graphdef, model_config,
        rollout_lib.RolloutConfig(config.turn_tokens, config.temperature, config.top_k or None,
                                  config.top_p or None, config.think_tokens), stop_id)
    self.score = functools.partial(_jitted_sequence_log_probs, graphdef)
    self._step = None

  def _train_step(self, state: train_step.TrainState):
    if self._step is None:
      self._step = train_step.jit_train_step(grpo_loss_fn(self.graphdef, self.config),
                                             self.optimizer, state, self.mesh)
    return self._step

  def play(self, params: nnx.State, experiment_ids: np.ndarray, key: jax.Array,
           group_size: int) -> rollout_lib.Rollout:
    """`group_size` episodes of each experiment, grouped: rows [i * G, (i + 1) * G)."""
    ids = np.repeat(experiment_ids, group_size)
    tokens, mask = rollout_lib.prompt_batch([self.prompts[i] for i in ids], self.pad_id)
    return self.rollout(params, self.env_params, jnp.asarray(ids), tokens, mask, key)

  def iteration(self, state: train_step.TrainState, ref_params: nnx.State, iteration: int,
                seed: int) -> tuple[train_step.TrainState, dict[str, float]]:
    """One GRPO iteration (rollouts, scoring, epochs x minibatches of updates)."""
    c = self.config
    ids = iteration_experiments(int(self.env_params.budget.shape[0]), c.experiments_per_batch,
                                seed, iteration)
    start = time.perf_counter()
    played = self.play(state.params, ids, jax.random.key(seed * 1_000_003 + iteration),
                       c.group_size)
    rewards = played.rewards.reshape(len(ids), c.group_size)
    advantages = grpo_loss.group_advantages(rewards).reshape(-1)
    length = used_length(jax.device_get(played.input_mask))
    tokens, input_mask, loss_mask = (x[:, :length] for x in (
        played.tokens, played.input_mask, played.choice_mask))
    old_logp = self.score(state.params, tokens, input_mask)
    ref_logp = self.score(ref_params, tokens, input_mask)
    jax.block_until_ready(ref_logp)
    rollout_seconds = time.perf_counter() - start
    batch = {"tokens": tokens, "input_mask": input_mask, "loss_mask": loss_mask,
             "old_logp": old_logp, "ref_logp": ref_logp, "advantages": advantages}
    rows = played.tokens.shape[0]
    if rows % c.minibatches:
      raise ValueError(f"experiments_per_batch * group_size = {rows} is not a multiple of "
                       f"rl.minibatches={c.minibatches}")
    per = rows // c.minibatches
    step_fn = self._train_step(state)
    batch_sharding = train_step.microbatch_sharding(self.mesh)
    rng = np.random.default_rng([seed, iteration, 1])
    metrics = []
    for _ in range(c.epochs):
      order = rng.permutation(rows)
      for m in range(c.minibatches):
        pick = jnp.asarray(order[m * per:(m + 1) * per])
        minibatch = jax.tree_util.tree_map(lambda x: x[pick], batch)
        # The rows were gathered on the device: lay them out as the step's in_shardings say.
        state, out = step_fn(state, jax.device_put(
            train_step.split_microbatches(minibatch, c.grad_accum_steps), batch_sharding))
        metrics.append(out)
    agent_tokens = float(jnp.sum(played.loss_mask))
    budgets = np.asarray(self.env_params.budget)[ids].repeat(c.group_size)
    summary = {k: float(np.mean([float(m[k]) for m in metrics])) for k in metrics[0]}
    summary.update(
        reward=float(jnp.mean(played.rewards)),
        reward_std_in_group=float(jnp.mean(jnp.std(rewards, axis=1))),
        trials=float(np.mean(budgets)),
        parsed_fraction=parsed_fraction(played, budgets),
        agent_tokens=agent_tokens,
        choice_fraction=float(jnp.sum(played.choice_mask)) / max(agent_tokens, 1.0),
        rollout_seconds=rollout_seconds,
        rollout_tokens_per_s=agent_tokens / rollout_seconds,
        seconds=time.perf_counter() - start)
    return state, summary


def train(trainer: GrpoTrainer, workdir: str | os.PathLike, init_params: nnx.State,
          ref_params: nnx.State, tokenizer_blob: bytes, seed: int = 0, stage: str = "rl"
          ) -> nnx.State:
  """Runs (or resumes) GRPO from `init_params`; returns the final parameters.

  Args:
    trainer: the policy graph, environment, mesh and `rl` config (iterations, log_every,
      checkpoint_every); stages that share one share its compilations.
    workdir: checkpoints in `<workdir>/checkpoints`, metrics in `<workdir>/metrics.jsonl`.
    init_params: the starting policy (the distilled one, or a fresh one for RL only).
    ref_params: the KL reference policy.
    tokenizer_blob: saved with every checkpoint.
    seed: fixes experiment choice and sampling.
    stage: the name its metrics are logged and recorded under (the pipeline's "rl" or
      "rl_only").
  """
  config, model_config, mesh = trainer.config, trainer.model_config, trainer.mesh
  workdir = pathlib.Path(workdir)
  params = sharding_lib.shard_params(init_params, mesh)
  ref_params = sharding_lib.shard_params(ref_params, mesh)
  state = jax.jit(train_step.init_state, static_argnums=1)(params, trainer.optimizer)
  manager = checkpoint_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=2)
  # A checkpoint's step counts iterations, each of epochs x minibatches optimizer steps.
  state = resume.resume(manager, state, model_config, mesh, config.epochs * config.minibatches)
  writer = metrics_lib.MetricsWriter(workdir, stage)
  iteration = manager.latest_step() or 0
  while iteration < config.iterations:
    state, summary = trainer.iteration(state, ref_params, iteration, seed)
    iteration += 1
    if iteration % config.log_every == 0 or iteration == config.iterations:
      writer.write(iteration, summary)
    if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
      manager.save(iteration, state.params, state.opt_state, model_config, tokenizer_blob,
                   force=True)
    resume.check_injected_failure(config, iteration)
  manager.close()
  return state.params
