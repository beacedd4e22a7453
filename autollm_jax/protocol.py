"""The text protocol between the agent and the environment, defined once and used everywhere.

Training text, evaluation rollouts and recommendations all render through this module. An
episode is a prompt (rendered on the host once per experiment) followed by turns; in each
turn the agent writes free reasoning and an action, and the environment answers:

  <task> pretrain_steplaw: choose the learning rate ... Metric: smooth loss, lower is better.
  <target> fidelity N=1.074e+09,D=2.000e+10: 118 candidate
  configurations. Parameters: lr (log) in [2.44e-04, 1.11e-02]; bs (log) in [3.20e+01,
  2.05e+03]. Budget: 5 trials.
  <cheap> fidelity N=2.147e+08,D=4.000e+09: all 3 runs, best first.
  lr=2.76e-03 bs=1.28e+02 smooth loss=2.6210e+00
  lr=1.95e-03 bs=2.56e+02 smooth loss=2.6304e+00
  ...
  <think> free reasoning </think> <execute> lr=1.38e-03 bs=2.56e+02 </execute>
  <obs> smooth loss=2.2255e+00 best=2.2255e+00 left=4 </obs>
  <think> ...

(the prompt's lines are separated by "\n"; the line breaks inside the <target> line above are
only for this docstring). Formats:
  * Parameter values, fidelity scales, parameter ranges: PARAM format `d.dde[+-]dd`, exactly
    8 characters, a sign-free mantissa with three significant digits and a signed two-digit
    exponent (`3.45e-04`, `0.00e+00`). Values must be >= 0 and < 9.995e+99; values below
    1e-99 are written as `0.00e+00`.
  * Outcomes (metric values in their own sign): OUTCOME format `[-]d.dddde[+-]dd`, five
    significant digits (`2.2255e+00`, `-1.0300e-01`).
  * `none` stands for a missing outcome: the trial's action did not parse, or no trial has
    parsed yet (then `best=none`).
  * Trials left: one digit (budgets are 1..9).
  * Action: `<execute>` then, for every parameter of the task in the task's order,
    ` name=PARAM`, then ` </execute>`. The agent's turn is `<think> ... </think> ` followed by
    the action; the action ends the turn.
  * Feedback: `\n<obs> {metric}={OUTCOME|none} best={OUTCOME|none} left={digit} </obs>\n`;
    the outcome and best are in the metric's own sign (higher is better for maximized ones).
Cheap results: rows of each context fidelity, best first; all of them when there are at most
`max_rows`, else a selection stated in the text (see `select_rows`). Under a parameter budget
(the cap is the target's `budget_quantile` of parameter counts) only the cheap runs within the
same quantile of their fidelity's counts are shown, as the teacher weighs them.

`action_parts` and `feedback_parts` give the literal text between the numbers of the two
blocks; the device environment renders feedback from the same parts, so host and device
texts agree by construction.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from autollm_jax.experiments import Experiment, budget_mask
from autollm_jax.gym.table import TaskTable

TASK = "<task>"
TARGET = "<target>"
CHEAP = "<cheap>"
THINK = "<think>"
THINK_END = "</think>"
EXECUTE = "<execute>"
EXECUTE_END = "</execute>"
OBS = "<obs>"
OBS_END = "</obs>"
MARKERS: tuple[str, ...] = (TASK, TARGET, CHEAP, THINK, THINK_END, EXECUTE, EXECUTE_END, OBS,
                            OBS_END)
NONE = "none"
PARAM_WIDTH = 8
PARAM_RE = r"\d\.\d\de[+-]\d\d"
OUTCOME_RE = r"-?\d\.\d{4}e[+-]\d\d"
MAX_BUDGET = 9


def _scientific(x: float, digits: int, what: str) -> str:
  """x with `digits` decimals in the mantissa and a signed two-digit exponent."""
  if not math.isfinite(x):
    raise ValueError(f"{what} {x!r} is not a finite number")
  if abs(x) < 1e-99:
    x = 0.0
  text = f"{x:.{digits}e}"
  if len(text.split("e")[1]) != 3:
    raise ValueError(f"{what} {x!r} is too large for the protocol's two-digit exponent")
  return text


def format_param(x: float) -> str:
  """A parameter value in the PARAM format `d.dde[+-]dd` (8 characters)."""
  if x < 0:
    raise ValueError(f"parameter value {x!r} is negative; the protocol writes values >= 0")
  return _scientific(float(x), 2, "parameter value")


def param_values(configs: np.ndarray) -> list[list[str]]:
  """The PARAM strings each parameter takes among configurations float[n, P]: P sorted lists
  (what an action grammar may restrict each value to)."""
  return [sorted({format_param(x) for x in column}) for column in np.asarray(configs).T]


def format_outcome(y: float | None) -> str:
  """A metric value in the OUTCOME format `[-]d.dddde[+-]dd`, or `none` for None."""
  return NONE if y is None else _scientific(float(y), 4, "outcome")


def action_parts(param_names: Sequence[str]) -> tuple[str, ...]:
  """The literal text around the P numbers of an action: P + 1 strings."""
  names = list(param_names)
  return ((f"{EXECUTE} {names[0]}=",) + tuple(f" {n}=" for n in names[1:]) +
          (f" {EXECUTE_END}",))


def render_action(param_names: Sequence[str], values: Sequence[float]) -> str:
  """`<execute> lr=1.38e-03 bs=2.56e+02 </execute>`."""
  if len(values) != len(param_names):
    raise ValueError(f"{len(values)} values for {len(param_names)} parameters")
  parts = action_parts(param_names)
  return "".join(p + format_param(v) for p, v in zip(parts, values)) + parts[-1]


def render_turn(reasoning: str, param_names: Sequence[str], values: Sequence[float]) -> str:
  """The agent's whole turn: `<think> reasoning </think> <execute> ... </execute>`."""
  return f"{THINK} {reasoning} {THINK_END} " + render_action(param_names, values)


def parse_action(turn: str, param_names: Sequence[str]) -> tuple[str, ...] | None:
  """The number texts of the action after the turn's first `<execute>`, or None when no
  well-formed action (every parameter in order, PARAM_RE numbers) starts there."""
  start = turn.find(EXECUTE)
  fields = "".join(f" {re.escape(name)}=({PARAM_RE})" for name in param_names)
  match = re.compile(f"{re.escape(EXECUTE)}{fields} {re.escape(EXECUTE_END)}").match(
      turn, start) if start >= 0 else None
  return match.groups() if match else None


def feedback_parts(metric: str) -> tuple[str, str, str, str]:
  """The literal text around the feedback's outcome, best and trials-left fields."""
  return (f"\n{OBS} {metric}=", " best=", " left=", f" {OBS_END}\n")


def render_feedback(metric: str, outcome: float | None, best: float | None, left: int) -> str:
  """`\\n<obs> loss=2.2255e+00 best=2.2255e+00 left=4 </obs>\\n` (None renders as `none`)."""
  if not 0 <= left <= MAX_BUDGET:
    raise ValueError(f"trials left {left} outside 0..{MAX_BUDGET}")
  p = feedback_parts(metric)
  return p[0] + format_outcome(outcome) + p[1] + format_outcome(best) + p[2] + str(left) + p[3]


def select_rows(minimized: np.ndarray, max_rows: int) -> tuple[np.ndarray, str]:
  """Which runs of one cheap fidelity a prompt shows, best first, and how the text says so.

  Rule: all runs when there are at most `max_rows`; otherwise the best ceil(max_rows / 2),
  then the rest of the rows spread evenly (by rank) over the remaining runs, the worst
  included.

  Args:
    minimized: float[n] the metric in the minimized convention (sign * outcome).
    max_rows: the most rows to show, >= 1.
  Returns:
    (int[k] indices into `minimized`, best first; the sentence stating the selection).
  """
  if max_rows < 1:
    raise ValueError(f"max_rows must be >= 1, got {max_rows}")
  order = np.argsort(minimized, kind="stable")
  n = len(order)
  if n <= max_rows:
    return order, f"all {n} runs, best first"
  n_best = (max_rows + 1) // 2
  n_spread = max_rows - n_best
  rest = order[n_best:]
  spread = rest[np.round(np.linspace(len(rest) - 1, 0, n_spread)[::-1]).astype(int)]
  text = f"the best {n_best}"
  if n_spread:
    text += f" and {n_spread} spread over the other {n - n_best}"
  return np.concatenate([order[:n_best], spread]), text + f" of {n} runs, best first"


def shown_context(table: TaskTable, experiment: Experiment, max_rows: int
                  ) -> list[tuple[int, np.ndarray, str]]:
  """The cheap runs a prompt shows: per context fidelity, (fidelity index, int[k] TaskTable
  rows best first, the text that says which runs these are). Under a parameter budget only
  the runs within its quantile of the fidelity's parameter counts are candidates for showing.
  """
  metric = table.metric(experiment.metric)
  column = table.metric_column(experiment.metric)
  context_rows = np.asarray(experiment.context_rows)
  out = []
  for fidelity in experiment.context_fidelities:
    rows = context_rows[table.fidelity_index[context_rows] == fidelity]
    within = ""
    in_budget = budget_mask(table, experiment, rows)
    if in_budget is not None:
      rows = rows[in_budget]
      within = (f" the runs at or under its {100 * experiment.budget_quantile:.0f}th "
                f"percentile of parameter counts;")
    shown, how = select_rows(metric.sign() * table.outcomes[rows, column], max_rows)
    out.append((int(fidelity), rows[shown], f"{within} {how}"))
  return out


def _fidelity_text(table: TaskTable, fidelity: int) -> str:
  """The fidelity's name, and its numeric scale unless the name already spells it out (the
  CSV tasks name a fidelity by its scale columns: `N=2.147e+08,D=4.000e+09`)."""
  name = table.fidelity_names[fidelity]
  if all(f"{scale_name}=" in name for scale_name in table.fidelity_scale_names):
    return f"fidelity {name}"
  scale = " ".join(f"{scale_name}={format_param(v)}" for scale_name, v in
                   zip(table.fidelity_scale_names, table.fidelity_scale[fidelity]))
  return f"fidelity {name} ({scale})"


def _range_text(param, values: np.ndarray) -> str:
  if param.scale == "categorical":
    choices = ", ".join(format_param(v) for v in np.unique(values))
    return f"{param.name} (categorical) one of {{{choices}}}"
  return (f"{param.name} ({param.scale}) in [{format_param(values.min())}, "
          f"{format_param(values.max())}]")


def render_prompt(table: TaskTable, experiment: Experiment, max_rows: int = 16) -> str:
  """The prompt of one experiment: task, target, cheap results; ends with a line break.

  Args:
    table: the experiment's TaskTable.
    experiment: what to configure (its candidates give the parameter ranges).
    max_rows: the most cheap runs shown per context fidelity (see `select_rows`).
  """
  if not 1 <= experiment.budget <= MAX_BUDGET:
    raise ValueError(f"{experiment.name}: budget {experiment.budget} outside 1..{MAX_BUDGET}")
  metric = table.metric(experiment.metric)
  column = table.metric_column(experiment.metric)
  better = "lower" if metric.direction == "min" else "higher"
  description = table.description.rstrip(". ")
  lines = [f"{TASK} {table.name}: {description}. Metric: {metric.name}, {better} is better."]
  candidates = table.configs[experiment.candidate_rows]
  ranges = "; ".join(_range_text(p, candidates[:, i]) for i, p in enumerate(table.params))
  cap = ("" if experiment.param_budget is None else
         f" Parameter-count cap: {format_param(experiment.param_budget)}.")
  lines.append(f"{TARGET} {_fidelity_text(table, experiment.target_fidelity)}: "
               f"{len(candidates)} candidate configurations.{cap} Parameters: {ranges}. "
               f"Budget: {experiment.budget} trials.")
  for fidelity, rows, how in shown_context(table, experiment, max_rows):
    lines.append(f"{CHEAP} {_fidelity_text(table, fidelity)}:{how}.")
    for row in rows:
      values = " ".join(f"{p.name}={format_param(v)}"
                        for p, v in zip(table.params, table.configs[row]))
      lines.append(f"{values} {metric.name}={format_outcome(table.outcomes[row, column])}")
  return "\n".join(lines) + "\n"
