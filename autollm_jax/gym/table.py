"""TaskTable: one LLMConfig-Gym task as arrays (configurations x fidelities -> outcomes).

A task is a set of rows. Each row is one configuration run at one fidelity, with one outcome
per metric. Rows are grouped by fidelity; within a fidelity each configuration appears once
(duplicates in a source are averaged when the table is built).

Arrays (R rows, P parameters, M metrics, F fidelities, S fidelity-scale axes, A aux columns):
  configs:        float64[R, P]  parameter values in their natural units (a categorical
                                 parameter holds one of its numeric choices, e.g. bias 0/1).
  fidelity_index: int32[R]       which fidelity each row belongs to, rows sorted by it.
  outcomes:       float64[R, M]  the metrics; each metric has a direction (min or max).
  fidelity_scale: float64[F, S]  a numeric description of each fidelity (for instance model
                                 parameters N and training tokens D) usable for extrapolation.
  aux:            float64[R, A]  per-row numbers that are neither parameters nor metrics
                                 (an architecture's parameter count, a run's train time).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Scale = Literal["log", "linear", "categorical"]
Direction = Literal["min", "max"]
SCALES: tuple[str, ...] = ("log", "linear", "categorical")
DIRECTIONS: tuple[str, ...] = ("min", "max")


@dataclasses.dataclass(frozen=True)
class Param:
  """A configuration parameter: its name, scale and (for categorical ones) the choices."""

  name: str
  scale: Scale
  choices: tuple[float, ...] = ()

  def to_unit(self, values: np.ndarray) -> np.ndarray:
    """Maps values to the axis on which distances are measured (log10 for log scales)."""
    values = np.asarray(values, dtype=np.float64)
    return np.log10(values) if self.scale == "log" else values


@dataclasses.dataclass(frozen=True)
class Metric:
  """An outcome column and whether lower ("min") or higher ("max") is better."""

  name: str
  direction: Direction

  def sign(self) -> float:
    """+1 for minimized metrics, -1 for maximized: sign * y is always minimized."""
    return 1.0 if self.direction == "min" else -1.0


@dataclasses.dataclass(frozen=True)
class TaskTable:
  """All outcomes of one task. See the module docstring for the array shapes."""

  name: str
  description: str
  params: tuple[Param, ...]
  metrics: tuple[Metric, ...]
  fidelity_names: tuple[str, ...]
  fidelity_scale_names: tuple[str, ...]
  fidelity_scale: np.ndarray
  configs: np.ndarray
  fidelity_index: np.ndarray
  outcomes: np.ndarray
  aux_names: tuple[str, ...] = ()
  aux: np.ndarray | None = None
  source_rows: int = 0

  def __post_init__(self):
    r, p = self.configs.shape
    if p != len(self.params):
      raise ValueError(f"{self.name}: configs has {p} columns for {len(self.params)} params")
    if self.outcomes.shape != (r, len(self.metrics)):
      raise ValueError(f"{self.name}: outcomes shape {self.outcomes.shape} != ({r}, "
                       f"{len(self.metrics)})")
    if self.fidelity_index.shape != (r,):
      raise ValueError(f"{self.name}: fidelity_index shape {self.fidelity_index.shape}")
    if self.fidelity_scale.shape != (len(self.fidelity_names), len(self.fidelity_scale_names)):
      raise ValueError(f"{self.name}: fidelity_scale shape {self.fidelity_scale.shape}")
    if np.any(np.diff(self.fidelity_index) < 0):
      raise ValueError(f"{self.name}: rows must be sorted by fidelity")
    if self.aux is not None and self.aux.shape != (r, len(self.aux_names)):
      raise ValueError(f"{self.name}: aux shape {self.aux.shape}")

  @property
  def num_rows(self) -> int:
    return self.configs.shape[0]

  @property
  def param_names(self) -> tuple[str, ...]:
    return tuple(p.name for p in self.params)

  @property
  def metric_names(self) -> tuple[str, ...]:
    return tuple(m.name for m in self.metrics)

  def metric(self, name: str | None = None) -> Metric:
    """The named metric, or the default (first) one."""
    if name is None:
      return self.metrics[0]
    for m in self.metrics:
      if m.name == name:
        return m
    raise KeyError(f"task {self.name} has no metric {name!r}; metrics: {self.metric_names}")

  def metric_column(self, name: str | None = None) -> int:
    return self.metrics.index(self.metric(name))

  def fidelity(self, name_or_index: str | int) -> int:
    """The index of a fidelity given by name or index."""
    if isinstance(name_or_index, (int, np.integer)):
      if not 0 <= name_or_index < len(self.fidelity_names):
        raise IndexError(f"task {self.name} has {len(self.fidelity_names)} fidelities")
      return int(name_or_index)
    if name_or_index not in self.fidelity_names:
      raise KeyError(f"task {self.name} has no fidelity {name_or_index!r}; fidelities: "
                     f"{', '.join(self.fidelity_names)}")
    return self.fidelity_names.index(name_or_index)

  def rows(self, fidelity: str | int) -> np.ndarray:
    """int[n] row indices of one fidelity."""
    return np.flatnonzero(self.fidelity_index == self.fidelity(fidelity))

  def configs_at(self, fidelity: str | int) -> np.ndarray:
    """float64[n, P] the configurations run at one fidelity."""
    return self.configs[self.rows(fidelity)]

  def outcomes_at(self, fidelity: str | int, metric: str | None = None) -> np.ndarray:
    """float64[n] one metric's outcomes at one fidelity."""
    return self.outcomes[self.rows(fidelity), self.metric_column(metric)]

  def aux_at(self, fidelity: str | int, name: str) -> np.ndarray:
    """float64[n] one aux column at one fidelity."""
    if name not in self.aux_names:
      raise KeyError(f"task {self.name} has no aux column {name!r}; aux: {self.aux_names}")
    return self.aux[self.rows(fidelity), self.aux_names.index(name)]

  def configs_per_fidelity(self) -> dict[str, int]:
    counts = np.bincount(self.fidelity_index, minlength=len(self.fidelity_names))
    return {n: int(c) for n, c in zip(self.fidelity_names, counts)}

  def fidelity_order(self) -> np.ndarray:
    """int[F] fidelities sorted from cheapest to most expensive (by the product of scales)."""
    return np.argsort(np.sum(np.log(self.fidelity_scale), axis=1), kind="stable")
