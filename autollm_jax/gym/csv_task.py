"""Tasks from a CSV of runs: the built-in Step Law and ADMIRE tasks, and a user's own sweep.

A task spec (a JSON file, or flags) says which columns are what:
  {
    "name": "my_sweep",                    (default: the CSV's file name)
    "description": "...",                  (optional, shown in prompts)
    "csv": "runs.csv",                     (relative to the spec file, or to the gym data
                                            folder for the built-in tasks)
    "params": {"lr": "log", "bs": "log"},  (scale: log, linear or categorical; a name may be
                                            a glob such as "ratio_*")
    "fidelities": ["N", "D"],              (columns that together identify a fidelity)
    "fidelity_labels": {"model": {"N": {"Qwen2.5-0.5B": 4.94e8}}},
                                           (optional: a non-numeric fidelity column, and the
                                            numeric scale each of its labels stands for)
    "metrics": {"smooth loss": "min"},     (direction min or max; the first is the default)
    "aux": ["train_time"]                  (optional per-row numbers kept alongside)
  }
Column names match exactly, or else ignoring case and treating ' ', '_' and '-' alike.
Rows with the same configuration and fidelity are averaged. Any problem is a CsvTaskError
that names the file, the row or column, and the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import math
import os
import pathlib
import re
from typing import Mapping, Sequence

import numpy as np

from autollm_jax.gym import data
from autollm_jax.gym import table as table_lib


class CsvTaskError(data.GymDataError):
  """A bad task CSV or spec; the message names the file, the row or column and the fix."""


@dataclasses.dataclass(frozen=True)
class CsvTaskSpec:
  """What the columns of a task CSV mean. See the module docstring."""

  name: str
  csv: str
  params: Mapping[str, str]
  fidelities: Sequence[str]
  metrics: Mapping[str, str]
  description: str = ""
  fidelity_labels: Mapping[str, Mapping[str, Mapping[str, float]]] = dataclasses.field(
      default_factory=dict)
  aux: Sequence[str] = ()

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _pairs(text: str, what: str, flag: str, allowed: Sequence[str]) -> dict[str, str]:
  """'a:x,b:y' -> {a: x, b: y}, checking every value is allowed."""
  out = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    name, sep, kind = item.rpartition(":")
    if not sep or not name or kind not in allowed:
      raise CsvTaskError(f"{flag}: {item!r} is not NAME:{'|'.join(allowed)}; write the {what} "
                         f"as e.g. {flag}=lr:log,bs:log")
    out[name] = kind
  if not out:
    raise CsvTaskError(f"{flag} is empty: name at least one {what}")
  return out


def spec_from_flags(csv_path: str, params: str, fidelities: str, metric: str,
                    name: str | None = None) -> CsvTaskSpec:
  """A spec from the command-line form: --params=lr:log,bs:log --fidelities=N,D
  --metric=smooth_loss:min (several metrics comma-separated; the first is the default)."""
  return CsvTaskSpec(
      name=name or pathlib.Path(csv_path).stem,
      csv=str(pathlib.Path(csv_path).resolve()),
      params=_pairs(params, "parameters", "--params", table_lib.SCALES),
      fidelities=[f.strip() for f in fidelities.split(",") if f.strip()],
      metrics=_pairs(metric, "metrics", "--metric", table_lib.DIRECTIONS))


def load_spec(path: str | os.PathLike) -> CsvTaskSpec:
  """A spec from a JSON file; its "csv" path is taken relative to the file."""
  path = pathlib.Path(path)
  try:
    raw = json.loads(path.read_text())
  except FileNotFoundError:
    raise CsvTaskError(f"task spec {path} does not exist") from None
  except json.JSONDecodeError as e:
    raise CsvTaskError(f"task spec {path} is not valid JSON: {e}") from None
  required = ("csv", "params", "fidelities", "metrics")
  missing = [k for k in required if k not in raw]
  if missing:
    raise CsvTaskError(f"task spec {path} lacks the field(s) {missing}; a spec needs "
                       f"{list(required)} (see autollm_jax/gym/csv_task.py)")
  unknown = set(raw) - {f.name for f in dataclasses.fields(CsvTaskSpec)}
  if unknown:
    raise CsvTaskError(f"task spec {path} has unknown field(s) {sorted(unknown)}")
  raw.setdefault("name", path.stem)
  raw["csv"] = str((path.parent / raw["csv"]).resolve())
  return CsvTaskSpec(**raw)


def _normalize(column: str) -> str:
  return re.sub(r"[\s_\-]+", "_", column.strip().lower())


def _match_columns(pattern: str, header: Sequence[str], csv_path, field: str) -> list[str]:
  if pattern in header:
    return [pattern]
  if any(ch in pattern for ch in "*?["):
    found = [c for c in header if fnmatch.fnmatchcase(c, pattern)]
  else:
    found = [c for c in header if _normalize(c) == _normalize(pattern)]
  if not found:
    raise CsvTaskError(f"{csv_path}: no column {pattern!r} (named by the spec's {field}). "
                       f"Columns are: {', '.join(header)}. Fix the name in the spec or flags.")
  return found


def _expand(names: Mapping[str, str] | Sequence[str], header, csv_path, field):
  """Spec names (maybe globs) -> [(column, value)] in spec order, each column once."""
  items = names.items() if isinstance(names, Mapping) else [(n, None) for n in names]
  out: dict[str, str | None] = {}
  for pattern, value in items:
    for column in _match_columns(pattern, header, csv_path, field):
      out.setdefault(column, value)
  return list(out.items())


def _read_rows(csv_path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
  try:
    with open(csv_path, newline="") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      rows = [r for r in reader if any(cell.strip() for cell in r)]
  except FileNotFoundError:
    raise CsvTaskError(f"task CSV {csv_path} does not exist; give an existing file") from None
  if not header or not rows:
    raise CsvTaskError(f"{csv_path} is empty: it needs a header line and at least one run")
  return [h.strip() for h in header], rows


def _number(cell: str, csv_path, line: int, column: str) -> float:
  try:
    return float(cell)
  except ValueError:
    raise CsvTaskError(f"{csv_path}, line {line}, column {column!r}: {cell!r} is not a "
                       f"number. Fix that cell or drop the row.") from None


def _fidelity_name(columns: Sequence[str], key: tuple) -> str:
  return ",".join(k if isinstance(k, str) else f"{c}={k:.3e}" for c, k in zip(columns, key))


def build_table(spec: CsvTaskSpec, csv_path: pathlib.Path) -> table_lib.TaskTable:
  """The TaskTable of a task CSV under `spec` (duplicates averaged, rows sorted by fidelity).

  Raises:
    CsvTaskError: naming the file, the row (1-based line number) or column, and the fix.
  """
  header, rows = _read_rows(csv_path)
  param_cols = _expand(spec.params, header, csv_path, "params")
  metric_cols = _expand(spec.metrics, header, csv_path, "metrics")
  aux_cols = [c for c, _ in _expand(spec.aux, header, csv_path, "aux")]
  fid_cols = [c for c, _ in _expand(spec.fidelities, header, csv_path, "fidelities")]
  labels = {c: spec.fidelity_labels[k] for k in spec.fidelity_labels
            for c in _match_columns(k, header, csv_path, "fidelity_labels")}
  for column, scale in param_cols:
    if scale not in table_lib.SCALES:
      raise CsvTaskError(f"{csv_path}: parameter {column!r} has scale {scale!r}; use one of "
                         f"{table_lib.SCALES}")
  for column, direction in metric_cols:
    if direction not in table_lib.DIRECTIONS:
      raise CsvTaskError(f"{csv_path}: metric {column!r} has direction {direction!r}; use min "
                         f"or max")
  index = {c: i for i, c in enumerate(header)}

  groups: dict[tuple, list[np.ndarray]] = {}
  for line, row in enumerate(rows, start=2):
    if len(row) < len(header):
      raise CsvTaskError(f"{csv_path}, line {line}: {len(row)} cells for {len(header)} "
                         f"columns. Fix the row or drop it.")
    key = []
    for c in fid_cols:
      cell = row[index[c]].strip()
      if c in labels:
        if cell not in next(iter(labels[c].values())):
          raise CsvTaskError(f"{csv_path}, line {line}, column {c!r}: fidelity label {cell!r} "
                             f"has no scale in the spec's fidelity_labels; add it there.")
        key.append(cell)
      else:
        key.append(_number(cell, csv_path, line, c))
    config = [_number(row[index[c]], csv_path, line, c) for c, _ in param_cols]
    for (c, scale), v in zip(param_cols, config):
      if not math.isfinite(v) or (scale == "log" and v <= 0):
        raise CsvTaskError(f"{csv_path}, line {line}, column {c!r}: {v!r} is not a valid value "
                           f"of a {scale}-scaled parameter" +
                           (" (it must be positive); give it a linear scale or fix the value"
                            if scale == "log" else "; fix the value"))
    values = [_number(row[index[c]], csv_path, line, c) for c, _ in metric_cols]
    for (c, _), v in zip(metric_cols, values):
      if not math.isfinite(v):
        raise CsvTaskError(f"{csv_path}, line {line}, column {c!r}: the outcome is {v}, which is "
                           f"not finite. Drop the run or record the diverged value as a number.")
    aux = [_number(row[index[c]], csv_path, line, c) for c in aux_cols]
    groups.setdefault((tuple(key), tuple(config)), []).append(np.array(values + aux))

  fidelity_keys = sorted({k for k, _ in groups}, key=lambda k: tuple(
      (next(iter(labels[c].values()))[v] if c in labels else v) for c, v in zip(fid_cols, k)))
  if len(fidelity_keys) < 2:
    raise CsvTaskError(f"{csv_path}: the fidelity columns {fid_cols} take only "
                       f"{len(fidelity_keys)} distinct value(s); a multi-fidelity task needs at "
                       f"least two (cheap runs and the expensive target). Check --fidelities.")
  scale_names, scale = _fidelity_scale(fid_cols, labels, fidelity_keys)
  order = {k: i for i, k in enumerate(fidelity_keys)}
  items = sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
  means = np.stack([np.mean(v, axis=0) for _, v in items])
  n_metrics = len(metric_cols)
  params = tuple(
      table_lib.Param(c, s, tuple(sorted({cfg[i] for (_, cfg), _ in items}))
                      if s == "categorical" else ())
      for i, (c, s) in enumerate(param_cols))
  return table_lib.TaskTable(
      name=spec.name, description=spec.description, params=params,
      metrics=tuple(table_lib.Metric(c, d) for c, d in metric_cols),
      fidelity_names=tuple(_fidelity_name(fid_cols, k) for k in fidelity_keys),
      fidelity_scale_names=tuple(scale_names), fidelity_scale=scale,
      configs=np.array([cfg for (_, cfg), _ in items], np.float64).reshape(len(items), -1),
      fidelity_index=np.array([order[k] for (k, _), _ in items], np.int32),
      outcomes=means[:, :n_metrics], aux_names=tuple(aux_cols),
      aux=means[:, n_metrics:] if aux_cols else None, source_rows=len(rows))


def _fidelity_scale(fid_cols, labels, keys) -> tuple[list[str], np.ndarray]:
  """Names and float64[F, S] numeric scale of each fidelity (labels mapped through the spec)."""
  names, columns = [], []
  for i, c in enumerate(fid_cols):
    if c in labels:
      for scale_name, mapping in labels[c].items():
        names.append(scale_name)
        columns.append([mapping[k[i]] for k in keys])
    else:
      names.append(c)
      columns.append([k[i] for k in keys])
  return names, np.array(columns, np.float64).T
