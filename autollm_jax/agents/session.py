"""An ask/tell session for a researcher's expensive run: the target from a TaskTable of cheap
runs, a candidate grid, and a JSON state file of the expensive results told so far.

With a trained policy the state also keeps its last proposal (the grid configuration and the
policy's turn); a tell of that configuration keeps the turn with the result, so that the
policy's next call reads its own earlier turns, as in a device episode.

The state file is written atomically (a temporary file renamed over it), and only after every
tell of a call has been checked, so a bad call leaves it as it was.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import pathlib
import tempfile
from typing import Sequence

import numpy as np

from autollm_jax import experiments
from autollm_jax.agents import base
from autollm_jax.gym.table import TaskTable

MAX_PRODUCT_GRID = 20000
REL_TOL = 1e-3
STATE_VERSION = 1


class SessionError(ValueError):
  """A bad target, grid, tell or state file; the message says what to fix."""


def parse_target(text: str, table: TaskTable) -> np.ndarray:
  """float64[S] the target's scale from "N=1.07e9,D=2e10" (every scale axis named once)."""
  values = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    name, sep, value = item.partition("=")
    if not sep or name.strip() not in table.fidelity_scale_names:
      raise SessionError(f"--target: {item!r} is not NAME=VALUE with NAME one of "
                         f"{', '.join(table.fidelity_scale_names)}")
    try:
      values[name.strip()] = float(value)
    except ValueError:
      raise SessionError(f"--target: {value!r} (for {name}) is not a number") from None
  missing = [n for n in table.fidelity_scale_names if n not in values]
  if missing:
    raise SessionError(f"--target lacks {', '.join(missing)}; give e.g. --target=" +
                       ",".join(f"{n}=..." for n in table.fidelity_scale_names))
  return np.array([values[n] for n in table.fidelity_scale_names])


def read_grid(path: str | os.PathLike, table: TaskTable) -> np.ndarray:
  """float64[n, P] candidate configurations from a CSV with one column per parameter."""
  try:
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
  except FileNotFoundError:
    raise SessionError(f"grid CSV {path} does not exist") from None
  if not rows:
    raise SessionError(f"grid CSV {path} has no rows")
  missing = [p for p in table.param_names if p not in rows[0]]
  if missing:
    raise SessionError(f"grid CSV {path} lacks the column(s) {missing}; it needs one column "
                       f"per parameter: {', '.join(table.param_names)}")
  out = np.empty((len(rows), len(table.params)))
  for i, row in enumerate(rows):
    for j, p in enumerate(table.param_names):
      try:
        out[i, j] = float(row[p])
      except ValueError:
        raise SessionError(f"grid CSV {path}, line {i + 2}, column {p!r}: {row[p]!r} is not a "
                           f"number") from None
  return np.unique(out, axis=0)


def _distinct(values: np.ndarray) -> np.ndarray:
  """Sorted values with near-equal ones (within REL_TOL, e.g. 9.77e-4 and 9.766e-4) merged."""
  out = []
  for v in np.unique(values):
    if not out or not np.isclose(v, out[-1], rtol=REL_TOL, atol=0.0):
      out.append(v)
  return np.array(out)


def default_grid(table: TaskTable) -> np.ndarray:
  """float64[n, P] every combination of the values seen per parameter, or (if that is over
  MAX_PRODUCT_GRID) the distinct configurations seen."""
  values = [_distinct(table.configs[:, j]) for j in range(len(table.params))]
  if np.prod([len(v) for v in values], dtype=np.float64) <= MAX_PRODUCT_GRID:
    return np.array(list(itertools.product(*values)), np.float64)
  return np.unique(table.configs, axis=0)


def target_observation(table: TaskTable, target_scale: np.ndarray, grid: np.ndarray,
                       metric: str | None = None, budget: int = experiments.MAX_BUDGET
                       ) -> base.Observation:
  """The Observation of a target no run in `table` was made at: every cheaper fidelity's
  results as context, `grid` [n, P] as the candidates."""
  cheaper = np.flatnonzero(experiments.cheaper_than(table.fidelity_scale, target_scale))
  if not cheaper.size:
    raise SessionError("no fidelity in the runs is cheaper than the target on every scale "
                       "axis; check --target")
  m = table.metric(metric)
  context = [base.CheapResults.from_rows(table, int(f), table.rows(int(f)), metric)
             for f in table.fidelity_order() if f in cheaper]
  name = ",".join(f"{n}={v:.3e}" for n, v in zip(table.fidelity_scale_names, target_scale))
  return base.Observation(
      task=table.name, description=table.description, params=table.params, metric=m,
      budget=budget, target_name=name, scale_names=table.fidelity_scale_names,
      target_scale=np.asarray(target_scale, np.float64), candidates=grid, candidate_aux={},
      context=tuple(context))


def config_text(obs: base.Observation, config: np.ndarray) -> str:
  """The form a tell takes, e.g. "lr=0.00138,bs=256" (values exact to 6 digits)."""
  return ",".join(f"{p.name}={v:.6g}" for p, v in zip(obs.params, config))


def find_candidate(obs: base.Observation, config: dict[str, float]) -> int:
  """The index of the candidate equal (to REL_TOL) to `config`, or a SessionError."""
  names = [p.name for p in obs.params]
  unknown = [n for n in config if n not in names]
  if unknown:
    raise SessionError(f"unknown parameter(s) {unknown}; the parameters are "
                       f"{', '.join(names)}")
  missing = [n for n in names if n not in config]
  if missing:
    raise SessionError(f"the configuration lacks {', '.join(missing)}")
  match = np.ones(obs.num_candidates, bool)
  for j, n in enumerate(names):
    close = np.isclose(obs.candidates[:, j], config[n], rtol=REL_TOL, atol=0.0)
    if not close.any():
      grid_values = ", ".join(f"{v:.6g}" for v in np.unique(obs.candidates[:, j])[:20])
      raise SessionError(f"{n}={config[n]:.6g} is not in the grid; its values are "
                         f"{grid_values}")
    match &= close
  if not match.any():
    raise SessionError(f"{config_text(obs, np.array([config[n] for n in names]))} is not a "
                       f"configuration of the grid (each value is, the combination is not)")
  return int(np.flatnonzero(match)[0])


def parse_tell(text: str, obs: base.Observation) -> tuple[int, float]:
  """(candidate index, outcome) from "lr=0.00138,bs=256=2.231" (the outcome after the last =)."""
  config_part, sep, outcome_part = text.rpartition("=")
  if not sep or "=" not in config_part:
    raise SessionError(f"--tell={text!r} is not CONFIG=OUTCOME, e.g. --tell=" +
                       ",".join(f"{p.name}=..." for p in obs.params) + "=2.31")
  try:
    outcome = float(outcome_part)
  except ValueError:
    raise SessionError(f"--tell={text!r}: the outcome {outcome_part!r} is not a number") from None
  if not np.isfinite(outcome):
    raise SessionError(f"--tell={text!r}: the outcome must be finite")
  config = {}
  for item in config_part.split(","):
    name, sep, value = item.partition("=")
    try:
      config[name.strip()] = float(value)
    except ValueError:
      raise SessionError(f"--tell={text!r}: {item!r} is not NAME=NUMBER") from None
    if not sep:
      raise SessionError(f"--tell={text!r}: {item!r} is not NAME=NUMBER")
  return find_candidate(obs, config), outcome


def new_state(obs: base.Observation) -> dict:
  return {"version": STATE_VERSION, "task": obs.task, "target": obs.target_name,
          "metric": obs.metric.name, "trials": []}


def load_state(path: str | os.PathLike, obs: base.Observation) -> dict:
  """The state at `path` (a new one if there is no file), checked against this target."""
  path = pathlib.Path(path)
  if not path.exists():
    return new_state(obs)
  try:
    state = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise SessionError(f"state file {path} is not valid JSON ({e}); remove it to start over")
  for key in ("task", "target", "metric"):
    if state.get(key) != new_state(obs)[key]:
      raise SessionError(f"state file {path} is for {key} {state.get(key)!r}, not "
                         f"{new_state(obs)[key]!r}; use another --state file")
  return state


def history(state: dict, obs: base.Observation) -> list[base.Trial]:
  """The told trials as Trials on this grid."""
  out = []
  for t in state["trials"]:
    i = find_candidate(obs, t["config"])
    out.append(base.Trial(i, obs.candidates[i], float(t["outcome"]),
                          obs.metric.sign() * float(t["outcome"])))
  return out


def tell(state: dict, obs: base.Observation, texts: Sequence[str]) -> dict:
  """A new state with the told results added (the given state is left unchanged)."""
  trials = list(state["trials"])
  proposal = state.get("proposal")
  for text in texts:
    i, outcome = parse_tell(text, obs)
    trial = {"config": _config_dict(obs, i), "outcome": outcome}
    if proposal is not None and _proposed(obs, proposal) == i:
      trial["turn"], proposal = proposal["turn"], None
    trials.append(trial)
  new = {k: v for k, v in state.items() if k != "proposal"}
  return {**new, "trials": trials, **({"proposal": proposal} if proposal else {})}


def _proposed(obs: base.Observation, proposal: dict) -> int | None:
  """The grid candidate of a remembered proposal (None if this grid lacks it)."""
  try:
    return find_candidate(obs, proposal["config"])
  except SessionError:
    return None


def with_proposal(state: dict, obs: base.Observation, candidate: int, turn: str) -> dict:
  """A new state that remembers a policy's proposal: grid candidate `candidate`, written in
  the policy's turn `turn`."""
  return {**state, "proposal": {"config": _config_dict(obs, candidate), "turn": turn}}


def _config_dict(obs: base.Observation, candidate: int) -> dict[str, float]:
  """A grid candidate as the state file writes it: {parameter name: value}."""
  return {p.name: float(v) for p, v in zip(obs.params, obs.candidates[candidate])}


def told_turns(state: dict) -> list[str | None]:
  """Each told trial's policy turn (None for a trial the policy did not propose)."""
  return [t.get("turn") for t in state["trials"]]


def save_state(path: str | os.PathLike, state: dict) -> None:
  """Writes the state atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(state, f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
