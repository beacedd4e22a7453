"""Trajectory simulation: a host agent (the teacher) plays experiments in the text protocol,
and its episodes become token sequences with a loss mask on the agent's own tokens.

An episode's text is the prompt, then for each trial the agent's turn (reasoning and action,
`protocol.render_turn`) and the environment's feedback (`reference_env.ReferenceEnv`). Each
piece is tokenized on its own and the pieces are concatenated, as a rollout builds its context
(the prompt once, then sampled turns, then feedback written by the environment); the loss mask
is 1 on the agent's turns and 0 on the prompt and the feedback. A trailing EOS after the last
feedback is part of no turn and carries no loss.

Storage: `<dir>/trajectories.npz` (tokens concatenated, loss masks, per-episode offsets) and
`<dir>/manifest.json` (the seed, agent, experiments, budgets, counts and the tokenizer's
SHA-256), so a set is reproducible and checkable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np

from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax.agents import base
from autollm_jax.evaluation import episode_seed
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable
from autollm_jax.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class TextEpisode:
  """One simulated episode as text pieces: (text, is_agent) in order, and its final regret."""

  experiment: str
  seed: int
  budget: int
  pieces: tuple[tuple[str, bool], ...]
  final_regret: float

  @property
  def text(self) -> str:
    return "".join(t for t, _ in self.pieces)


def play(agent: base.Agent, experiment: Experiment, table: TaskTable, seed: int,
         max_rows: int, sees_prompt: bool = False) -> TextEpisode:
  """Plays one episode of `agent` through the reference environment, recording the text.

  With `sees_prompt` the agent observes only the cheap runs the prompt shows, so that its
  every action follows from the text a policy is trained on; else every cheap run.
  """
  env = reference_env.ReferenceEnv(table, experiment)
  obs = base.Observation.from_experiment(experiment, table, max_rows if sees_prompt else None)
  rng = np.random.default_rng(episode_seed(experiment, seed))
  pieces = [(env.prompt(max_rows), False)]
  history: list[base.Trial] = []
  done = False
  while not done:
    proposal = agent.propose(obs, history, rng)
    turn = protocol.render_turn(proposal.reasoning, table.param_names, proposal.config)
    feedback, _, done = env.step(turn)
    pieces += [(turn, True), (feedback, False)]
    index = env.history[-1]
    outcome = float(env.outcomes[index])
    history.append(base.Trial(index, obs.candidates[index], outcome,
                              obs.metric.sign() * outcome))
  return TextEpisode(experiment.name, seed, experiment.budget, tuple(pieces), env.regret())


def simulate(agent: base.Agent, experiments: Sequence[Experiment],
             tables: Mapping[str, TaskTable], seeds: Sequence[int], budgets: Sequence[int],
             max_rows: int, sees_prompt: bool = False) -> list[TextEpisode]:
  """Every (experiment, budget, seed) episode of `agent` (see `play`), in that order; an empty
  `budgets` plays each experiment at its own budget."""
  return [play(agent, e, tables[e.task], s, max_rows, sees_prompt)
          for e in experiments_lib.at_budgets(experiments, budgets) for s in seeds]


def tokenize(episode: TextEpisode, tables: grammar.TokenTables
             ) -> tuple[np.ndarray, np.ndarray]:
  """(int32[T] tokens, float32[T] loss mask) of one episode, BOS first and EOS last, in the
  canonical tokenization of protocol text (the tokens the grammar forces and the device
  environment writes)."""
  tokenizer = tables.tokenizer
  tokens = [tokenizer.bos_id] if tokenizer.bos_id >= 0 else []
  mask = [0.0] * len(tokens)
  for text, is_agent in episode.pieces:
    ids = tables.encode(text)
    tokens += ids
    mask += [1.0 if is_agent else 0.0] * len(ids)
  tokens.append(tokenizer.eos_id)
  mask.append(0.0)
  return np.asarray(tokens, np.int32), np.asarray(mask, np.float32)


def save(directory: str | os.PathLike, episodes: Sequence[TextEpisode], tokenizer_blob: bytes,
         tokenizer: Tokenizer, manifest: Mapping) -> None:
  """Writes the tokenized episodes and a manifest (with `manifest`'s entries) to `directory`."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tables = grammar.TokenTables.build(tokenizer)
  seqs = [tokenize(e, tables) for e in episodes]
  offsets = np.cumsum([0] + [len(t) for t, _ in seqs])
  np.savez(directory / "trajectories.npz", tokens=np.concatenate([t for t, _ in seqs]),
           loss_mask=np.concatenate([m for _, m in seqs]), offsets=offsets)
  full = dict(manifest)
  full.update(episodes=len(episodes), tokens=int(offsets[-1]),
              agent_tokens=int(sum(m.sum() for _, m in seqs)),
              tokenizer_sha256=hashlib.sha256(tokenizer_blob).hexdigest(),
              mean_final_regret=float(np.mean([e.final_regret for e in episodes])),
              experiments=sorted({e.experiment for e in episodes}))
  (directory / "manifest.json").write_text(json.dumps(full, indent=1))
  with open(directory / "episodes.txt", "w") as f:
    for e in episodes[:20]:
      f.write(f"=== {e.experiment} seed={e.seed} budget={e.budget} regret={e.final_regret:.4f}"
              f"\n{e.text}\n")


def load(directory: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
  """(token sequences, loss masks, manifest) written by `save`."""
  directory = pathlib.Path(directory)
  with np.load(directory / "trajectories.npz") as f:
    tokens, mask, offsets = f["tokens"], f["loss_mask"], f["offsets"]
  manifest = json.loads((directory / "manifest.json").read_text())
  bounds = list(zip(offsets[:-1], offsets[1:]))
  return [tokens[a:b] for a, b in bounds], [mask[a:b] for a, b in bounds], manifest
