"""A trained policy as an agent: it plays whole episodes on the device (`autollm_jax.rollout`)
through the jitted environment, with grammar-constrained actions, so every action it
completes parses.

Unlike the host baselines it does not propose one trial at a time: `play` runs every
(experiment, seed) episode in batches and returns the candidate matched at each trial, which
the evaluation harness scores with the same regret code as every other agent.

It is also a host agent (`propose`): one turn at a time from an Observation and the trials
so far, which is how `launch/recommend.py` asks a trained policy what to run next on a
target that no gym table holds.

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
from autollm_jax import sampler as sampler_lib
from autollm_jax.agents import base
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
    candidate_values: whether each value of an action is one of the experiment's candidates'
      (the grammar's value tries; what a policy trained in the environment writes); False:
      any number in the PARAM format, matched to the nearest candidate (for a model that was
      not, which a character-by-character trie can misread: committing to a mantissa's
      first digit can leave only values of another magnitude).
    tasks: the gym tasks the policy was trained on (empty: not recorded); what
      launch/evaluate.py plays it on unless told otherwise.
  """

  max_prompt_rows: int
  max_context_fidelities: int
  turn_tokens: int
  think_tokens: int
  temperature: float = 0.0
  batch_size: int = 64
  candidate_values: bool = True
  tasks: tuple[str, ...] = ()

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
    fields = json.loads(path.read_text())
    return cls(**{**fields, "tasks": tuple(fields.get("tasks", ()))})


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


def observation_problem(obs: base.Observation) -> tuple[TaskTable, Experiment]:
  """An Observation as a TaskTable of its own rows and the Experiment over them, so that a
  prompt can be written for a target that no gym table holds (a researcher's next run).

  The table has the cheap fidelities (cheapest first), then the target's candidates with
  unknown (NaN) outcomes, and obs.metric as its one metric; aux columns the candidates lack
  are NaN there.
  """
  blocks = [(c.configs, c.outcomes, c.aux) for c in obs.context]
  blocks.append((obs.candidates, np.full(obs.num_candidates, np.nan), obs.candidate_aux))
  aux_names = tuple(sorted({name for _, _, aux in blocks for name in aux}))
  sizes = [len(outcomes) for _, outcomes, _ in blocks]
  aux = (np.concatenate([np.stack([aux.get(a, np.full(n, np.nan)) for a in aux_names], axis=1)
                         for (_, _, aux), n in zip(blocks, sizes)]) if aux_names else None)
  table = TaskTable(
      name=obs.task, description=obs.description, params=obs.params, metrics=(obs.metric,),
      fidelity_names=tuple(c.name for c in obs.context) + (obs.target_name,),
      fidelity_scale_names=obs.scale_names,
      fidelity_scale=np.stack([c.scale for c in obs.context] + [obs.target_scale]),
      configs=np.concatenate([configs for configs, _, _ in blocks]),
      fidelity_index=np.repeat(np.arange(len(blocks)), sizes),
      outcomes=np.concatenate([outcomes for _, outcomes, _ in blocks])[:, None],
      aux_names=aux_names, aux=aux)
  target, first = len(obs.context), sum(sizes[:-1])
  experiment = Experiment(
      name=f"{obs.task}/{obs.target_name}/{obs.metric.name}", task=obs.task, split="test",
      target_fidelity=target, context_fidelities=tuple(range(target)), metric=obs.metric.name,
      budget=obs.budget, candidate_rows=np.arange(first, first + obs.num_candidates),
      context_rows=np.arange(first), param_budget=obs.param_budget,
      budget_quantile=obs.budget_quantile)
  return table, experiment


# The reasoning of a turn the policy did not write: a trial run and told by the researcher.
TOLD_REASONING = "Run by the researcher."


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
    self._rollout_config = rollout_lib.RolloutConfig(
        settings.turn_tokens, settings.temperature, think_tokens=settings.think_tokens)
    self._rollout = rollout_lib.jit_rollout(graphdef, model_config, self._rollout_config,
                                            rollout_lib.stop_token(tokenizer))
    self._sampler = sampler_lib.Sampler(graphdef, model_config, tokenizer.pad_id)

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
    env_params = jax.device_put(env_lib.build_env_params(
        tables, shown, self.tokenizer, candidate_values=self.settings.candidate_values))
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

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator, turns: Sequence[str | None] = ()) -> base.Proposal:
    """The next trial, on the host: the policy reads its prompt and every trial so far as a
    turn, then the environment's feedback, and writes one grammar-constrained turn, sampled
    as in `play`. A trial's turn is `turns[k]` where given (the policy's own turn that
    proposed it, as in a device episode), else the action with reasoning TOLD_REASONING.

    Returns:
      The configuration its action names (natural units; the caller matches it to the
      nearest candidate not run yet, as the environments do) and the turn's text.
    Raises:
      ValueError: the budget is spent, or the turn ran out of tokens before its action
        (settings.turn_tokens too short for this task's action).
    """
    if len(history) >= obs.budget:
      raise ValueError(f"all {obs.budget} trials of the budget are told; nothing to propose")
    table, experiment = observation_problem(obs)
    shown = prompt_experiment(experiment, table, self.settings)
    names, sign = table.param_names, obs.metric.sign()
    own = list(turns) + [None] * (len(history) - len(turns))
    context, best = "", None
    for k, (trial, turn) in enumerate(zip(history, own)):
      best = trial.outcome if best is None or sign * trial.outcome < sign * best else best
      context += ((turn if turn is not None else
                   protocol.render_turn(TOLD_REASONING, names, trial.config)) +
                  protocol.render_feedback(obs.metric.name, trial.outcome, best,
                                           obs.budget - k - 1))
    token_tables = grammar.TokenTables.build(self.tokenizer)
    tokens = self.prompt_tokens({table.name: table}, [shown])[0] + token_tables.encode(context)
    action_grammar = grammar.build_grammar(
        token_tables, [names],
        [protocol.param_values(obs.candidates) if self.settings.candidate_values else None])
    out = self._sampler(
        self.params, [tokens], self._rollout_config.sampling(),
        key=jax.random.key(int(rng.integers(2**31))),
        stop_ids=[rollout_lib.stop_token(self.tokenizer)],
        grammar=rollout_lib.sampler_grammar(action_grammar,
                                            token_tables.marker_ids[protocol.EXECUTE]),
        grammar_state=jnp.asarray(action_grammar.free_state[:1]))
    turn = self.tokenizer.decode(np.asarray(out.tokens[0, :int(out.lengths[0])]).tolist())
    numbers = protocol.parse_action(turn, names)
    if numbers is None:
      raise ValueError(f"the policy's turn ended without an action ({turn!r}); its "
                       f"turn_tokens={self.settings.turn_tokens} may be too short for task "
                       f"{obs.task}'s action")
    return base.Proposal(np.array([float(x) for x in numbers]), turn)
