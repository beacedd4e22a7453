"""The agent interface: whatever proposes configurations (baselines, the trained policy).

An agent sees an `Observation` (the task, the candidate configurations at the target fidelity
and the full results at the cheap fidelities, never an outcome at the target) and the trials
so far, and proposes the next configuration with, where it has one, its reasoning as text. A
proposal is a free configuration; like the device environment, the harness maps it to the
nearest candidate not run yet in the episode (autollm_jax/matching.py) and reads that
candidate's outcome.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import hashlib
from typing import Any, Mapping, Sequence

import numpy as np

from autollm_jax import experiments as experiments_lib
from autollm_jax import matching
from autollm_jax import protocol
from autollm_jax.experiments import PARAM_COUNT_AUX, Experiment
from autollm_jax.gym.table import Metric, Param, TaskTable

# Aux columns that are known before a run (they follow from the configuration), and so may be
# shown for the target candidates. Others (a run's train time) are outcomes.
STATIC_AUX = (PARAM_COUNT_AUX,)


@dataclasses.dataclass(frozen=True)
class CheapResults:
  """The results at one cheap fidelity.

  Attributes:
    name: the fidelity's name.
    scale: float64[S] its numeric scale (e.g. N, D).
    configs: float64[m, P] configurations in natural units.
    outcomes: float64[m] the experiment's metric, as measured.
    y: float64[m] sign * outcomes: lower is better whatever the metric's direction.
    aux: name -> float64[m] the task's aux columns at these rows.
    in_budget: bool[m] the rows within the experiment's parameter-budget quantile of this
      fidelity's parameter counts (all True without a budget), decided over every run of the
      fidelity even where only some are given.
  """

  name: str
  scale: np.ndarray
  configs: np.ndarray
  outcomes: np.ndarray
  y: np.ndarray
  aux: Mapping[str, np.ndarray]
  in_budget: np.ndarray

  @classmethod
  def from_rows(cls, table: TaskTable, fidelity: int, rows: np.ndarray, metric: str | None,
                in_budget: np.ndarray | None = None) -> CheapResults:
    """The results of table rows `rows` (all at `fidelity`) for `metric` (None: the task's
    first); in_budget None: every row."""
    col = table.metric_column(metric)
    outcomes = table.outcomes[rows, col]
    return cls(name=table.fidelity_names[fidelity], scale=table.fidelity_scale[fidelity],
               configs=table.configs[rows], outcomes=outcomes,
               y=table.metric(metric).sign() * outcomes,
               aux={a: table.aux[rows, i] for i, a in enumerate(table.aux_names)},
               in_budget=np.ones(len(rows), bool) if in_budget is None else in_budget)


@dataclasses.dataclass(frozen=True)
class Observation:
  """What an agent may know about one experiment (n candidates, P params, S scale axes).

  Attributes:
    task, description: the task's name and text.
    params: the P parameters (scale log/linear/categorical).
    metric: the metric and its direction.
    budget: trials at the target.
    target_name: the target fidelity's name.
    scale_names: the S fidelity-scale axes.
    target_scale: float64[S] the target fidelity's scale.
    candidates: float64[n, P] the valid configurations at the target.
    candidate_aux: name -> float64[n], the STATIC_AUX columns of the candidates.
    context: the cheap fidelities' results, cheapest first.
    param_budget: the parameter-count cap of the candidates, if any.
    budget_quantile: the quantile of the target's parameter counts that param_budget is.
  """

  task: str
  description: str
  params: tuple[Param, ...]
  metric: Metric
  budget: int
  target_name: str
  scale_names: tuple[str, ...]
  target_scale: np.ndarray
  candidates: np.ndarray
  candidate_aux: Mapping[str, np.ndarray]
  context: tuple[CheapResults, ...]
  param_budget: float | None = None
  budget_quantile: float | None = None

  @classmethod
  def from_experiment(cls, experiment: Experiment, table: TaskTable,
                      max_rows: int | None = None) -> Observation:
    """The experiment's observation: every cheap run of its context, or with `max_rows`
    only the runs its prompt shows (`protocol.shown_context`), as a policy reads them."""
    metric = table.metric(experiment.metric)
    shown = ({} if max_rows is None else
             {f: rows for f, rows, _ in protocol.shown_context(table, experiment, max_rows)})
    context = []
    for f in (int(f) for f in table.fidelity_order() if f in experiment.context_fidelities):
      rows = experiment.context_rows[table.fidelity_index[experiment.context_rows] == f]
      if max_rows is None:
        in_budget = experiments_lib.budget_mask(table, experiment, rows)
      else:  # the prompt shows runs within the budget only
        rows, in_budget = shown[f], None
      context.append(CheapResults.from_rows(table, f, rows, experiment.metric, in_budget))
    rows = experiment.candidate_rows
    return cls(
        task=table.name, description=table.description, params=table.params, metric=metric,
        budget=experiment.budget, target_name=table.fidelity_names[experiment.target_fidelity],
        scale_names=table.fidelity_scale_names,
        target_scale=table.fidelity_scale[experiment.target_fidelity],
        candidates=table.configs[rows],
        candidate_aux={a: table.aux[rows, i] for i, a in enumerate(table.aux_names)
                       if a in STATIC_AUX},
        context=tuple(context), param_budget=experiment.param_budget,
        budget_quantile=experiment.budget_quantile)

  @functools.cached_property
  def fingerprint(self) -> bytes:
    """A digest of everything here but the budget: equal for observations of one experiment
    built apart (one per episode, at several budgets), so agents can key caches on it."""
    h = hashlib.sha1()
    for f in dataclasses.fields(self):
      if f.name != "budget":
        _digest(h, getattr(self, f.name))
    return h.digest()

  @property
  def num_candidates(self) -> int:
    return self.candidates.shape[0]

  @property
  def transform(self) -> np.ndarray:
    """float64[4, P] the matching transform of the candidates (see matching.py)."""
    return matching.feature_transform(self.params, self.candidates)

  def features(self, configs: np.ndarray) -> np.ndarray:
    """float64[..., P] configurations (natural units) in the candidates' feature space."""
    return matching.features(np.asarray(configs, np.float64), self.transform)

  def match(self, config: np.ndarray, exclude: Sequence[int] = ()) -> int:
    """The index of the candidate nearest to `config` (out-of-range values clipped to the
    candidates' range, as the environments do), skipping `exclude` while any is left."""
    candidates = self.features(self.candidates)
    query = matching.clip_query(self.features(config), candidates.max(axis=0), self.transform)
    return int(matching.nearest(candidates, query, self.transform,
                                matching.not_run(self.num_candidates, exclude)))

  def format_config(self, config: np.ndarray) -> str:
    return " ".join(f"{p.name}={v:.3g}" for p, v in zip(self.params, config))


def _digest(h: Any, value: Any) -> None:
  """Feeds `value` (arrays, mappings, sequences and dataclasses of them, or values with a
  faithful repr) to the hash `h`, with delimiters so that different structures differ."""
  if isinstance(value, (str, int, float, type(None))):
    h.update(f"{value!r};".encode())
  elif isinstance(value, np.ndarray):
    h.update(f"array{value.dtype}{value.shape}".encode())
    h.update(np.ascontiguousarray(value).tobytes())
  elif isinstance(value, (tuple, list)):
    h.update(b"(")
    for item in value:
      _digest(h, item)
    h.update(b")")
  elif isinstance(value, Mapping):
    _digest(h, sorted(value.items()))
  elif dataclasses.is_dataclass(value):
    _digest(h, [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)])
  else:
    h.update(f"{value!r};".encode())


@dataclasses.dataclass(frozen=True)
class Trial:
  """One expensive trial: the candidate it ran (index into Observation.candidates).

  Attributes:
    candidate: the candidate's index.
    config: float64[P] the candidate's configuration.
    outcome: the metric as measured.
    y: sign * outcome (lower is better).
  """

  candidate: int
  config: np.ndarray
  outcome: float
  y: float


@dataclasses.dataclass(frozen=True)
class Proposal:
  """A proposed configuration (float64[P], natural units) and the reasoning behind it."""

  config: np.ndarray
  reasoning: str = ""


class Agent(abc.ABC):
  """Proposes the next configuration of an experiment from what it has seen so far."""

  name: str = "agent"

  def fit(self, experiments: Sequence[Experiment], tables: Mapping[str, TaskTable]) -> None:
    """Learns from training experiments (whose target outcomes are all known). Default: none.

    Args:
      experiments: train-split experiments.
      tables: task name -> TaskTable.
    """
    del experiments, tables

  @abc.abstractmethod
  def propose(self, obs: Observation, history: Sequence[Trial],
              rng: np.random.Generator) -> Proposal:
    """The next configuration to run at the target, given the trials so far (in order)."""


def untried(obs: Observation, history: Sequence[Trial]) -> np.ndarray:
  """int[k] indices of the candidates not run yet (all of them if every one was)."""
  return np.flatnonzero(matching.not_run(obs.num_candidates, [t.candidate for t in history]))


def nearest_fidelity(obs: Observation) -> CheapResults:
  """The cheap fidelity closest to the target in log scale."""
  dist = [np.sum((np.log(c.scale) - np.log(obs.target_scale)) ** 2) for c in obs.context]
  return obs.context[int(np.argmin(dist))]
