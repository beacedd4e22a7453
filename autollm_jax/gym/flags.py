"""absl flags shared by the launch scripts for choosing the gym's tasks and data.

`--gym_data_dir` points at the data folder; `--csv`/`--params`/`--fidelities`/`--metric` (or
`--spec=FILE.json`) describe a user's own task instead of the built-in ones.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from autollm_jax.gym import csv_task
from autollm_jax.gym import table as table_lib
from autollm_jax.gym import tasks

GYM_DATA_DIR = flags.DEFINE_string(
    "gym_data_dir", None, "Folder of the gym's source files (default: $AUTOLLM_GYM_DATA, then "
    "../shared/gym_data, then the user cache filled by the downloader).")
TASKS = flags.DEFINE_list("tasks", list(tasks.TASK_NAMES), "Built-in tasks to use.")
CSV = flags.DEFINE_string("csv", None, "A CSV of your own runs, one row per run.")
PARAMS = flags.DEFINE_string("params", None, "With --csv: parameter columns and scales, "
                             "e.g. lr:log,bs:log (scales: log, linear, categorical).")
FIDELITIES = flags.DEFINE_string("fidelities", None, "With --csv: the fidelity columns, e.g. N,D.")
METRIC = flags.DEFINE_string("metric", None, "With --csv: metric column(s) and direction, "
                             "e.g. smooth_loss:min (the first is the default metric).")
SPEC = flags.DEFINE_string("spec", None, "A JSON task spec (see autollm_jax/gym/csv_task.py), "
                           "instead of --csv/--params/--fidelities/--metric.")
TASK_NAME = flags.DEFINE_string("task_name", None, "With --csv: the task's name (default: the "
                                "file name).")
TARGET_FIDELITY = flags.DEFINE_string("target_fidelity", None, "The fidelity that test "
                                      "experiments target (default: the largest).")


def user_spec() -> csv_task.CsvTaskSpec | None:
  """The user's task spec from --spec or --csv..., or None when neither is given."""
  if SPEC.value:
    return csv_task.load_spec(SPEC.value)
  if not CSV.value:
    return None
  missing = [f"--{f.name}" for f in (PARAMS, FIDELITIES, METRIC) if not f.value]
  if missing:
    raise csv_task.CsvTaskError(f"--csv={CSV.value} also needs {', '.join(missing)}, e.g. "
                                f"--params=lr:log,bs:log --fidelities=N,D "
                                f"--metric=smooth_loss:min")
  return csv_task.spec_from_flags(CSV.value, PARAMS.value, FIDELITIES.value, METRIC.value,
                                  TASK_NAME.value)


def tables(default_tasks: Sequence[str] = ()) -> list[table_lib.TaskTable]:
  """The user's task if one is described by flags, else the built-in --tasks.

  Args:
    default_tasks: the built-in tasks to load when --tasks is not on the command line
      (empty: --tasks' default, every task).
  """
  spec = user_spec()
  if spec is not None:
    return [tasks.load_csv_task(spec)]
  names = default_tasks if default_tasks and not flags.FLAGS[TASKS.name].present else TASKS.value
  return [tasks.load_task(name, GYM_DATA_DIR.value) for name in names]
