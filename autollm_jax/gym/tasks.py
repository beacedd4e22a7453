"""The gym's tasks by name, and a user's own CSV task, as cached TaskTables."""

from __future__ import annotations

import json
import os
import pathlib

from autollm_jax.gym import cache
from autollm_jax.gym import csv_task
from autollm_jax.gym import data
from autollm_jax.gym import hwgpt
from autollm_jax.gym import table as table_lib

TASK_NAMES = ("pretrain_steplaw", "arch_hwgpt", "mixture_admire", "grpo_own")
_CSV_TASKS = ("pretrain_steplaw", "mixture_admire")
# Tasks whose CSV is the project's own data, committed under gym/: the command that makes it.
_OWN_CSV_TASKS = {"grpo_own": "python launch/grpo_sweep.py"}


def builtin_spec(name: str) -> csv_task.CsvTaskSpec:
  """The spec of a built-in CSV task (its "csv" is a key of gym/sources.json, or for the
  project's own tasks a path under gym/)."""
  raw = json.loads((data.GYM_DIR / "tasks" / f"{name}.json").read_text())
  return csv_task.CsvTaskSpec(**raw)


def load_task(name: str, data_dir: str | os.PathLike | None = None) -> table_lib.TaskTable:
  """The TaskTable of a built-in task, from the cache or built from the checked sources.

  Args:
    name: one of TASK_NAMES.
    data_dir: the gym data folder (the --gym_data_dir flag); None for the default search.
  """
  if name not in TASK_NAMES:
    raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASK_NAMES)}")
  if name in _CSV_TASKS or name in _OWN_CSV_TASKS:
    spec = builtin_spec(name)
    path = (data.GYM_DIR / spec.csv if name in _OWN_CSV_TASKS
            else data.source_path(spec.csv, data_dir))
    if not path.is_file():
      raise data.GymDataError(f"missing {path}, the table of task {name} (committed with the "
                              f"project): restore it from git, or regenerate it with "
                              f"{_OWN_CSV_TASKS[name]}")
    return cache.cached_table(name, spec.to_json(), [path],
                              lambda: csv_task.build_table(spec, path))
  sizes = hwgpt.task_definition()["sizes"]
  paths = [data.source_path(hwgpt.task_definition()["surrogate"].format(size=s), data_dir)
           for s in sizes]
  return cache.cached_table(name, json.dumps(hwgpt.task_definition(), sort_keys=True), paths,
                            lambda: hwgpt.build_table(data_dir))


def load_csv_task(spec: csv_task.CsvTaskSpec) -> table_lib.TaskTable:
  """The TaskTable of a user's CSV task (cached like the built-in ones)."""
  path = pathlib.Path(spec.csv)
  if not path.is_file():
    raise csv_task.CsvTaskError(f"task CSV {path} does not exist; give an existing file")
  return cache.cached_table(spec.name, spec.to_json(), [path],
                            lambda: csv_task.build_table(spec, path))


def load_all(data_dir: str | os.PathLike | None = None) -> list[table_lib.TaskTable]:
  return [load_task(n, data_dir) for n in TASK_NAMES]
