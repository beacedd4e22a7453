"""The evaluation harness: agents x experiments x seeds -> regret at budgets 1..K.

Every agent runs through the same loop: it proposes a configuration, the proposal is mapped to
the nearest candidate not run yet (Observation.match, i.e. autollm_jax/matching.py, as on the
device), the candidate's outcome is read, and after k trials the best outcome found is scored
with autollm_jax/regret.py against the experiment's candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Mapping, Sequence

from absl import logging
import numpy as np
import scipy.stats

from autollm_jax import regret
from autollm_jax.agents import base
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import Metric, Param, TaskTable

REGRETS = ("strict_regret", "normalized_regret")


@dataclasses.dataclass(frozen=True)
class Episode:
  """One agent on one experiment with one seed.

  Attributes:
    candidates: int[budget] the candidate index run at each trial.
    strict_regret, normalized_regret: float64[budget] of the best found after k = 1..budget.
    reasoning: the agent's text at each trial.
  """

  candidates: np.ndarray
  strict_regret: np.ndarray
  normalized_regret: np.ndarray
  reasoning: tuple[str, ...]


def episode_seed(experiment: Experiment, seed: int) -> int:
  """A seed per (experiment, seed), stable across runs and Python processes."""
  digest = hashlib.sha256(f"{experiment.name}|{seed}".encode()).digest()
  return int.from_bytes(digest[:8], "little")


def run_episode(agent: base.Agent, experiment: Experiment, table: TaskTable, seed: int,
                budget: int | None = None, obs: base.Observation | None = None) -> Episode:
  """Runs `agent` for `budget` trials (default: the experiment's) and scores each prefix.

  `obs` is the experiment's Observation, when the caller reuses one across seeds.
  """
  budget = budget or experiment.budget
  obs = obs or base.Observation.from_experiment(experiment, table)
  metric = table.metric(experiment.metric)
  outcomes = table.outcomes[experiment.candidate_rows, table.metric_column(experiment.metric)]
  rng = np.random.default_rng(episode_seed(experiment, seed))
  history: list[base.Trial] = []
  reasoning = []
  for _ in range(budget):
    proposal = agent.propose(obs, history, rng)
    i = obs.match(proposal.config, exclude=[t.candidate for t in history])  # as the envs do
    history.append(base.Trial(i, obs.candidates[i], float(outcomes[i]),
                              float(metric.sign() * outcomes[i])))
    reasoning.append(proposal.reasoning)
  return score_episode(experiment, table, [t.candidate for t in history], tuple(reasoning))


def score_episode(experiment: Experiment, table: TaskTable, candidates, reasoning=()
                  ) -> Episode:
  """Scores the candidates run at each trial (index into candidate_rows; -1: a trial whose
  action did not parse, which finds nothing). Until something is found the regret is that of
  the worst candidate, so normalized regret 1 and strict regret 1."""
  metric = table.metric(experiment.metric)
  outcomes = table.outcomes[experiment.candidate_rows, table.metric_column(experiment.metric)]
  y_star, y_worst, y_median = regret.normalizers(outcomes, metric.sign())
  candidates = np.asarray(candidates, np.int64)
  y = np.where(candidates >= 0, metric.sign() * outcomes[np.maximum(candidates, 0)], np.inf)
  best = np.minimum(np.minimum.accumulate(y), y_worst)
  return Episode(
      candidates=candidates,
      strict_regret=np.asarray(regret.strict_regret(best, y_star, y_median), np.float64),
      normalized_regret=np.asarray(regret.normalized_regret(best, y_star, y_worst), np.float64),
      reasoning=tuple(reasoning))


def _interval(values: np.ndarray, low: float = 0.0, high: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean and 95% t-interval (clipped to [low, high], the regrets' range by default) over
  the first axis of float[n, K]; zero width when n == 1."""
  mean = values.mean(axis=0)
  n = values.shape[0]
  if n < 2:
    return mean, mean, mean
  half = scipy.stats.t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
  return mean, np.clip(mean - half, low, high), np.clip(mean + half, low, high)


def paired_difference(report: dict, agent: str, baseline: str,
                      key: str = "strict_regret") -> dict:
  """The regret of `agent` minus that of `baseline`, paired by experiment.

  Both agents played the same experiments, so the per-experiment differences remove the
  spread between experiments that dominates each agent's own interval.

  Args:
    report: an `evaluate` report holding both agents.
    agent, baseline: agent names in the report.
    key: one of REGRETS.
  Returns:
    {"mean", "lo", "hi": float[budget] (mean difference and its 95% t-interval over the
    experiments; negative: `agent` has lower regret), "experiments": int}.
  """
  a, b = (report["agents"][name]["per_experiment"] for name in (agent, baseline))
  differences = np.array([np.subtract(a[n][key], b[n][key]) for n in report["experiments"]])
  mean, lo, hi = _interval(differences, -1.0, 1.0)
  return {"mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
          "experiments": len(differences)}


def _summary(per_experiment: Mapping[str, Mapping[str, list]], names: Sequence[str]) -> dict:
  """{regret: {mean, lo, hi}} over the experiments `names` (each already a mean over seeds)."""
  out = {}
  for key in REGRETS:
    values = np.array([per_experiment[n][key] for n in names])
    mean, lo, hi = _interval(values)
    out[key] = {"mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
                "experiments": len(names)}
  return out


def evaluate(agents: Mapping[str, base.Agent], experiments: Sequence[Experiment],
             tables: Mapping[str, TaskTable], seeds: Sequence[int], budget: int) -> dict:
  """Runs every agent on every experiment and seed; returns the report (a JSON-able dict).

  The report: {"budget", "seeds", "experiments": {name: {task, split, candidates}},
  "agents": {agent: {"overall": S, "per_task": {task: S}, "per_experiment": {name: E}}}}
  where S = {regret: {"mean", "lo", "hi": float[budget], "experiments": int}} (means over
  experiments of each experiment's mean over seeds, with a 95% t-interval over experiments),
  E = {regret: float[budget] (mean over seeds), regret + "_per_seed": float[seeds][budget],
  "candidates": int[seeds][budget]}, regret in ("strict_regret", "normalized_regret"), and
  list index k-1 is budget k.
  """
  report = {"budget": budget, "seeds": list(seeds),
            "experiments": {e.name: {"task": e.task, "split": e.split,
                                     "candidates": int(len(e.candidate_rows))}
                            for e in experiments},
            "agents": {}}
  for name, agent in agents.items():
    start = time.time()
    per_experiment = {}
    # Episode agents (trained policies) play every episode at once, on the device.
    played = agent.play(experiments, tables, seeds, budget) if hasattr(agent, "play") else None
    for i, experiment in enumerate(experiments):
      table = tables[experiment.task]
      if played is None:
        obs = base.Observation.from_experiment(experiment, table)
        episodes = [run_episode(agent, experiment, table, s, budget, obs) for s in seeds]
      else:
        episodes = [score_episode(experiment, table, played[(experiment.name, s)])
                    for s in seeds]
      entry = {"candidates": [e.candidates.tolist() for e in episodes]}
      for key in REGRETS:
        values = np.array([getattr(e, key) for e in episodes])
        entry[key] = values.mean(axis=0).tolist()
        entry[key + "_per_seed"] = values.tolist()
      per_experiment[experiment.name] = entry
      logging.info("%s %d/%d %s: strict regret at k=1,%d: %.3f, %.3f", name, i + 1,
                   len(experiments), experiment.name, budget, entry["strict_regret"][0],
                   entry["strict_regret"][-1])
    tasks = sorted({e.task for e in experiments})
    report["agents"][name] = {
        "overall": _summary(per_experiment, [e.name for e in experiments]),
        "per_task": {t: _summary(per_experiment, [e.name for e in experiments if e.task == t])
                     for t in tasks},
        "per_experiment": per_experiment,
        "seconds": time.time() - start}
    logging.info("%s done in %.1fs: strict regret %s", name, time.time() - start,
                 np.round(report["agents"][name]["overall"]["strict_regret"]["mean"], 3))
  return report


def synthetic_table(name: str = "synthetic", num_fidelities: int = 5, seed: int = 0,
                    param_counts: bool = False) -> TaskTable:
  """A small task whose optimum is known: a bowl in (log10 lr, log10 bs) whose centre moves
  as a power law of the fidelity's scale N, for sanity checks of agents and curation.

  At N = 1e8 * 2**f the loss is 2 + 1/f + (log10 lr - c_lr)^2 + 0.5 (log10 bs - c_bs)^2 with
  c_lr = -2.5 - 0.5 log10(N / 1e8) and c_bs = 2 + 0.3 log10(N / 1e8), on a grid of 13 lrs and
  9 batch sizes (a random tenth of the grid left out per fidelity: a configuration-space
  shift). With `param_counts`, an aux column "n_params" grows with bs (a stand-in for size).
  """
  rng = np.random.default_rng(seed)
  lrs = 10.0 ** np.linspace(-4.5, -1.5, 13)
  bss = 2.0 ** np.arange(4, 13)
  grid = np.array([(lr, bs) for lr in lrs for bs in bss])
  configs, fidelity_index, outcomes, scale = [], [], [], []
  for f in range(num_fidelities):
    n = 1e8 * 2.0 ** f
    keep = np.sort(rng.permutation(len(grid))[:int(0.9 * len(grid))])
    x = grid[keep]
    c_lr, c_bs = optimum(n)
    loss = (2 + 1 / (f + 1) + (np.log10(x[:, 0]) - c_lr) ** 2
            + 0.5 * (np.log10(x[:, 1]) - c_bs) ** 2)
    configs.append(x)
    fidelity_index.append(np.full(len(x), f, np.int32))
    outcomes.append(loss[:, None])
    scale.append([n])
  configs = np.concatenate(configs)
  return TaskTable(
      name=name, description="a synthetic bowl whose optimum moves with N",
      params=(Param("lr", "log"), Param("bs", "log")),
      metrics=(Metric("loss", "min"),),
      fidelity_names=tuple(f"N={s[0]:.3e}" for s in scale), fidelity_scale_names=("N",),
      fidelity_scale=np.array(scale), configs=configs,
      fidelity_index=np.concatenate(fidelity_index), outcomes=np.concatenate(outcomes),
      aux_names=("n_params",) if param_counts else (),
      aux=configs[:, 1:2] * 1e6 if param_counts else None, source_rows=len(configs))


def optimum(n: float) -> tuple[float, float]:
  """(log10 lr*, log10 bs*) of synthetic_table at scale N."""
  return -2.5 - 0.5 * np.log10(n / 1e8), 2 + 0.3 * np.log10(n / 1e8)
