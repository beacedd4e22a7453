"""Experiments: what the agent is asked to configure, and the train/test curation.

An experiment is a task, a target fidelity, the cheap (context) fidelities whose results the
agent sees, a metric, a trial budget, and the candidate configurations at the target (rows of
the task's TaskTable). Curation (`curate`) builds the train and test splits from TaskTables.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One configuration problem.

  Attributes:
    name: unique, readable id (e.g. "pretrain_steplaw/N=1.074e+09,D=2.000e+10/smooth loss").
    task: the TaskTable's name.
    split: "train" or "test".
    target_fidelity: index of the expensive fidelity to configure.
    context_fidelities: indices of the cheap fidelities whose results are shown.
    metric: the metric's name (its direction comes from the TaskTable).
    budget: number of high-fidelity trials, 1..5.
    candidate_rows: int[n] TaskTable rows (all at target_fidelity) that may be proposed.
    context_rows: int[m] TaskTable rows (at the context fidelities) whose outcomes are shown.
    param_budget: for architecture tasks, the parameter-count cap on candidates (else None).
  """

  name: str
  task: str
  split: str
  target_fidelity: int
  context_fidelities: tuple[int, ...]
  metric: str
  budget: int
  candidate_rows: np.ndarray
  context_rows: np.ndarray
  param_budget: float | None = None
