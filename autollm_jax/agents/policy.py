"""A trained policy as an agent: it plays whole episodes on the device (`autollm_jax.rollout`)
through the jitted environment, with grammar-constrained actions, so every action it
completes parses.

Unlike the host baselines it does not propose one trial at a time: `play` runs every
(experiment, seed) episode in batches and returns the candidate matched at each trial, which
the evaluation harness scores with the same regret code as every other agent.

A policy is loaded from a checkpoint directory (`autollm_jax.checkpoint`), which holds the
model config and the tokenizer; the protocol settings it was trained with (prompt rows,
cheap fidelities, turn length) are in `policy.json` beside the step folders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax import env as env_lib
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import rollout as rollout_lib
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable
from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.tokenizer import Tokenizer, tokenizer_from_blob

SETTINGS_FILE = "policy.json"


@dataclasses.dataclass(frozen=True)
class PolicySettings:
  """How a policy reads and writes the protocol.

  Attributes:
    max_prompt_rows: cheap results shown per fidelity.
    max_context_fidelities: the cheap fidelities shown (nearest the target; 0: all).
    turn_tokens: the most tokens of one turn.
    think_tokens: the most reasoning tokens of one turn (then the action is forced).
    temperature: sampling temperature at evaluation (0: greedy).
    batch_size: episodes played at once (batched by prompt length).
  """

  max_prompt_rows: int
  max_context_fidelities: int
  turn_tokens: int
  think_tokens: int
  temperature: float = 0.0
  batch_size: int = 64

  def save(self, directory: str | os.PathLike) -> None:
    path = pathlib.Path(directory) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

  @classmethod
  def load(cls, directory: str | os.PathLike) -> PolicySettings:
    path = pathlib.Path(directory) / SETTINGS_FILE
    if not path.is_file():
      raise checkpoint_lib.CheckpointError(
          f"{path} is missing: a policy checkpoint directory needs its protocol settings "
          "(written by launch/train.py); pass the checkpoints directory of a training run")
    return cls(**json.loads(path.read_text()))


def prompt_experiment(experiment: Experiment, table: TaskTable,
                      settings: PolicySettings) -> Experiment:
  """The experiment as the policy sees it: at most `max_context_fidelities` cheap fidelities."""
  return experiments_lib.nearest_context(experiment, table, settings.max_context_fidelities)


def prompt_tokens(tables: Mapping[str, TaskTable], experiments: Sequence[Experiment],
                  tokenizer: Tokenizer, settings: PolicySettings) -> list[list[int]]:
  """BOS and the canonical tokens of each experiment's prompt."""
  token_tables = grammar.TokenTables.build(tokenizer)
  return [[tokenizer.bos_id] + token_tables.encode(
      protocol.render_prompt(tables[e.task], e, settings.max_prompt_rows)) for e in experiments]


def load(checkpoint: str | os.PathLike) -> PolicyAgent:
  """The agent registry's factory: `agents.make("policy", checkpoint=DIR)`."""
  return PolicyAgent.from_checkpoint(checkpoint)


class PolicyAgent:
  """A policy model playing through the device environment (an episode agent: see `play`)."""

  name = "policy"

  def __init__(self, graphdef: nnx.GraphDef, params: nnx.State, model_config: ModelConfig,
               tokenizer: Tokenizer, settings: PolicySettings):
    self.graphdef, self.params, self.model_config = graphdef, params, model_config
    self.tokenizer = tokenizer
    self.settings = settings
    self._rollout = rollout_lib.jit_rollout(
        graphdef, model_config,
        rollout_lib.RolloutConfig(settings.turn_tokens, settings.temperature,
                                  think_tokens=settings.think_tokens),
        rollout_lib.stop_token(tokenizer))

  @classmethod
  def from_checkpoint(cls, checkpoint: str | os.PathLike) -> PolicyAgent:
    """The newest policy in a checkpoint directory (`<workdir>/<stage>/checkpoints`)."""
    restored = checkpoint_lib.CheckpointManager(checkpoint).restore_latest()
    if restored.tokenizer_blob is None:
      raise checkpoint_lib.CheckpointError(f"{checkpoint} holds no tokenizer")
    graphdef, _ = transformer.abstract_model(restored.config)
    return cls(graphdef, restored.params, restored.config,
               tokenizer_from_blob(restored.tokenizer_blob),
               PolicySettings.load(checkpoint))

  def prompt_tokens(self, tables: Mapping[str, TaskTable], experiments: Sequence[Experiment]
                    ) -> list[list[int]]:
    """Each experiment's prompt tokens (`prompt_tokens`: BOS and the protocol prompt)."""
    return prompt_tokens(tables, experiments, self.tokenizer, self.settings)

  def fit(self, experiments: Sequence[Experiment], tables: Mapping[str, TaskTable]) -> None:
    """Nothing to learn at evaluation: a policy is trained by launch/train.py."""
    del experiments, tables

  def play(self, experiments: Sequence[Experiment], tables: Mapping[str, TaskTable],
           seeds: Sequence[int], budget: int) -> dict[tuple[str, int], np.ndarray]:
    """Plays every (experiment, seed) episode for `budget` trials.

    Returns:
      (experiment name, seed) -> int[budget] the candidate matched at each trial (index into
      the experiment's candidate_rows), -1 where the action did not parse.
    """
    shown = [dataclasses.replace(prompt_experiment(e, tables[e.task], self.settings),
                                 budget=budget) for e in experiments]
    env_params = jax.device_put(env_lib.build_env_params(tables, shown, self.tokenizer))
    prompts = self.prompt_tokens(tables, shown)
    # Batches of similar prompt lengths: less padding, and no long prompt in every batch.
    episodes = sorted(((i, s) for s in seeds for i in range(len(shown))),
                      key=lambda episode: len(prompts[episode[0]]))
    out = {}
    for start in range(0, len(episodes), self.settings.batch_size):
      chunk = episodes[start:start + self.settings.batch_size]
      ids = np.array([i for i, _ in chunk], np.int32)
      tokens, mask = rollout_lib.prompt_batch([prompts[i] for i in ids], self.tokenizer.pad_id)
      key = jax.random.key(chunk[0][1] * 7919 + start)
      played = jax.device_get(self._rollout(self.params, env_params, jnp.asarray(ids), tokens,
                                            mask, key))
      for row, (i, s) in enumerate(chunk):
        out[(experiments[i].name, s)] = played.history[row, :budget]
    return out
