"""Experiments: what the agent is asked to configure, and the train/test curation.

An experiment is a task, a target fidelity, the cheap (context) fidelities whose results the
agent sees, a metric, a trial budget, and the candidate configurations at the target (rows of
the task's TaskTable). Curation (`curate`) builds the train and test splits from TaskTables.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from autollm_jax.gym.table import TaskTable


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
    budget_quantile: the quantile of the target's parameter counts that param_budget is.
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
  budget_quantile: float | None = None


MAX_BUDGET = 5
MIN_CANDIDATES = 10
PARAM_COUNT_AUX = "n_params"
TEST_BUDGET_QUANTILES = (0.25, 0.5, 0.75)
TRAIN_BUDGET_QUANTILES = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9)
AVERAGE_METRICS = ("metric_avg_id+ood", "metric_avg_id", "metric_avg_ood")
CONTEXT_SUBSETS = 3
CANDIDATE_SUBSETS = 3
CANDIDATE_SUBSET_FRACTION = 0.6
ROW_SUBSETS = 0
ROW_SUBSET_FRACTIONS = (0.05, 0.5)  # the range a row subset's share of each fidelity is drawn in
MIN_ROWS = 4


def _steplaw_test_targets(table: TaskTable) -> tuple[int, ...]:
  """Every setting of the largest model, and the largest-data setting of the next one."""
  n, d = table.fidelity_scale[:, 0], table.fidelity_scale[:, 1]
  sizes = np.unique(n)
  largest = np.flatnonzero(n == sizes[-1])
  if len(sizes) < 2:
    return tuple(int(i) for i in largest)
  second = np.flatnonzero(n == sizes[-2])
  return tuple(sorted(int(i) for i in (*largest, second[np.argmax(d[second])])))


# Tasks whose test targets are not just the largest fidelity (the paper's choice of held-out
# settings). Every other table, a user's CSV task included, tests on its largest fidelity.
_TEST_TARGET_RULES: dict[str, Callable[[TaskTable], tuple[int, ...]]] = {
    "pretrain_steplaw": _steplaw_test_targets,
}


def test_targets(table: TaskTable, target_fidelity: str | None = None) -> tuple[int, ...]:
  """Indices of the fidelities that test experiments target (never seen in training)."""
  if target_fidelity is not None:
    return (table.fidelity(target_fidelity),)
  rule = _TEST_TARGET_RULES.get(table.name)
  if rule is not None:
    return rule(table)
  return (int(table.fidelity_order()[-1]),)


def cheaper_than(fidelity_scale: np.ndarray, target_scale: np.ndarray) -> np.ndarray:
  """bool[F]: fidelities no larger than the target on every scale axis, and not equal to it.

  Args:
    fidelity_scale: float[F, S] the fidelities' scales.
    target_scale: float[S] the target's.
  """
  return (np.all(fidelity_scale <= target_scale, axis=1)
          & np.any(fidelity_scale < target_scale, axis=1))


def cheaper_fidelities(table: TaskTable, target: int, excluded: Sequence[int] = ()
                       ) -> tuple[int, ...]:
  """The fidelities cheaper than `target` (see cheaper_than), minus `excluded`."""
  below = cheaper_than(table.fidelity_scale, table.fidelity_scale[target])
  return tuple(int(f) for f in np.flatnonzero(below) if f not in excluded)


def _metrics_for(table: TaskTable, split: str) -> tuple[str, ...]:
  """Test: the default metric and the averages a task reports; train: every metric."""
  if split == "train":
    return table.metric_names
  averages = tuple(m for m in AVERAGE_METRICS if m in table.metric_names)
  return averages or (table.metric().name,)


def _worth_solving(table: TaskTable, metric: str, rows: np.ndarray) -> bool:
  """Enough candidates that the budget cannot enumerate them, and a non-flat landscape."""
  if len(rows) < MIN_CANDIDATES:
    return False
  y = table.metric(metric).sign() * table.outcomes[rows, table.metric_column(metric)]
  return bool(np.median(y) > y.min())


def within_quantile(counts: np.ndarray, quantile: float) -> np.ndarray:
  """bool[n] the runs whose parameter count is at most the counts' `quantile` (the rule of a
  parameter budget: the cap at the target, the matching runs at a cheap fidelity)."""
  return counts <= np.quantile(counts, quantile)


def budget_mask(table: TaskTable, experiment: Experiment, rows: np.ndarray
                ) -> np.ndarray | None:
  """bool[len(rows)] the runs among `rows` (one cheap fidelity's) within the experiment's
  parameter-budget quantile of their parameter counts; None where no budget applies."""
  if experiment.budget_quantile is None or PARAM_COUNT_AUX not in table.aux_names:
    return None
  return within_quantile(table.aux[rows, table.aux_names.index(PARAM_COUNT_AUX)],
                         experiment.budget_quantile)


def _budgeted(table: TaskTable, target: int, quantiles: Sequence[float]
              ) -> list[tuple[np.ndarray, float | None, float | None]]:
  """(candidate rows, parameter budget, quantile) per budget; one unbudgeted entry if the
  task has no parameter counts."""
  rows = table.rows(target)
  if PARAM_COUNT_AUX not in table.aux_names:
    return [(rows, None, None)]
  counts = table.aux_at(target, PARAM_COUNT_AUX)
  out = []
  for q in quantiles:
    out.append((rows[within_quantile(counts, q)], float(np.quantile(counts, q)), float(q)))
  return out


def _experiment(table: TaskTable, split: str, target: int, context: Sequence[int], metric: str,
                budget: int, candidates: np.ndarray, param_budget: float | None,
                quantile: float | None, tag: str = "") -> Experiment:
  name = f"{table.name}/{table.fidelity_names[target]}/{metric}"
  if quantile is not None:
    name += f"/budget=p{round(100 * quantile)}"
  if tag:
    name += f"/{tag}"
  context = tuple(sorted(context))
  return Experiment(
      name=name, task=table.name, split=split, target_fidelity=target,
      context_fidelities=context, metric=metric, budget=budget,
      candidate_rows=np.sort(candidates),
      context_rows=np.flatnonzero(np.isin(table.fidelity_index, context)),
      param_budget=param_budget, budget_quantile=quantile)


def _candidate_subsets(table: TaskTable, rows: np.ndarray, rng: np.random.Generator,
                       count: int) -> list[tuple[str, np.ndarray]]:
  """`count` candidate sets that shift the configuration space: random subsets and range
  crops, alternately."""
  out = []
  for i in range(count):
    if i % 2 == 0:
      keep = rng.permutation(len(rows))[:max(1, round(CANDIDATE_SUBSET_FRACTION * len(rows)))]
      out.append((f"cand{i}-random", rows[np.sort(keep)]))
      continue
    # Crop one numeric parameter to a window: the target space no longer spans the cheap one.
    numeric = [j for j, p in enumerate(table.params) if p.scale != "categorical"]
    j = int(rng.choice(numeric))
    unit = table.params[j].to_unit(table.configs[rows, j])
    lo, hi = unit.min(), unit.max()
    width = (hi - lo) * CANDIDATE_SUBSET_FRACTION
    start = lo + rng.uniform(0, hi - lo - width)
    inside = (unit >= start - 1e-12) & (unit <= start + width + 1e-12)
    out.append((f"cand{i}-crop-{table.params[j].name}", rows[inside]))
  return out


def _context_subsets(context: Sequence[int], rng: np.random.Generator
                     ) -> list[tuple[str, tuple[int, ...]]]:
  """Distinct proper, non-empty subsets of the cheap fidelities (at most CONTEXT_SUBSETS)."""
  if len(context) < 2:
    return []
  out: dict[tuple[int, ...], str] = {}
  for i in range(4 * CONTEXT_SUBSETS):
    size = int(rng.integers(1, len(context)))
    subset = tuple(sorted(int(f) for f in rng.choice(context, size=size, replace=False)))
    out.setdefault(subset, f"ctx{len(out)}")
    if len(out) == CONTEXT_SUBSETS:
      break
  return [(tag, subset) for subset, tag in out.items()]


def _row_subsets(table: TaskTable, context_rows: np.ndarray, rng: np.random.Generator,
                 count: int) -> list[tuple[str, np.ndarray]]:
  """`count` random subsets of the cheap runs, each keeping a share (drawn in
  ROW_SUBSET_FRACTIONS, at least MIN_ROWS runs) of every cheap fidelity's runs: the best run
  shown moves from one subset to the next, so the prompt, not the target's name, says where
  to start."""
  out = []
  for i in range(count):
    share = rng.uniform(*ROW_SUBSET_FRACTIONS)
    keep = []
    for f in np.unique(table.fidelity_index[context_rows]):
      rows = context_rows[table.fidelity_index[context_rows] == f]
      n = min(len(rows), max(MIN_ROWS, round(share * len(rows))))
      keep.append(rng.choice(rows, size=n, replace=False))
    out.append((f"rows{i}", np.sort(np.concatenate(keep))))
  return out


def _curate_table(table: TaskTable, rng: np.random.Generator, target_fidelity: str | None,
                  candidate_subsets: int, row_subsets: int) -> list[Experiment]:
  tests = test_targets(table, target_fidelity)
  out = []
  for target in tests:
    context = cheaper_fidelities(table, target, excluded=tests)
    if not context:
      raise ValueError(f"task {table.name}: the test target {table.fidelity_names[target]} "
                       f"has no cheaper fidelity to learn from; choose another target_fidelity")
    for metric in _metrics_for(table, "test"):
      for rows, cap, q in _budgeted(table, target, TEST_BUDGET_QUANTILES):
        if _worth_solving(table, metric, rows):
          out.append(_experiment(table, "test", target, context, metric, MAX_BUDGET, rows, cap,
                                 q))
  for target in range(len(table.fidelity_names)):
    context = cheaper_fidelities(table, target, excluded=tests)
    if target in tests or not context:
      continue
    for metric in _metrics_for(table, "train"):
      for rows, cap, q in _budgeted(table, target, TRAIN_BUDGET_QUANTILES):
        variants = [("full", context, rows)]
        variants += [(tag, ctx, rows) for tag, ctx in _context_subsets(context, rng)]
        variants += [(tag, context, cand)
                     for tag, cand in _candidate_subsets(table, rows, rng, candidate_subsets)]
        for tag, ctx, cand in variants:
          if _worth_solving(table, metric, cand):
            out.append(_experiment(table, "train", target, ctx, metric,
                                   int(rng.integers(1, MAX_BUDGET + 1)), cand, cap, q, tag))
        if row_subsets and _worth_solving(table, metric, rows):
          all_rows = np.flatnonzero(np.isin(table.fidelity_index, context))
          for tag, shown in _row_subsets(table, all_rows, rng, row_subsets):
            out.append(dataclasses.replace(
                _experiment(table, "train", target, context, metric,
                            int(rng.integers(1, MAX_BUDGET + 1)), rows, cap, q, tag),
                context_rows=shown))
  return out


def curate(tables: Sequence[TaskTable], seed: int = 0, target_fidelity: str | None = None,
           candidate_subsets: int = CANDIDATE_SUBSETS, row_subsets: int = ROW_SUBSETS
           ) -> list[Experiment]:
  """The train and test experiments of every table (filter them by `.split`).

  Test experiments target each task's highest fidelities (`test_targets`), see only strictly
  cheaper fidelities that are not themselves test targets, and have budget MAX_BUDGET. Train
  experiments target the other fidelities from still cheaper ones (never a test fidelity, as
  target or context) and are augmented with subsets of the cheap fidelities, subsets and crops
  of the candidate set, subsets of the cheap runs (if asked), and every metric of the task.
  Tables with a parameter-count aux column (architectures) get parameter budgets: only
  architectures at or under a quantile of the target's parameter counts are candidates.
  Deterministic given `seed`.

  Args:
    tables: the tasks.
    seed: seeds the augmentations and the train budgets.
    target_fidelity: the test target's name, in place of each table's default.
    candidate_subsets: candidate-set augmentations per train target and budget (random
      subsets and range crops, alternately); the test split does not depend on it.
    row_subsets: cheap-run augmentations per train target and budget (random subsets of
      every cheap fidelity's runs, see `_row_subsets`); the test split does not depend on it.
  Returns:
    Test experiments first, then train experiments, per table in the given order.
  """
  rng = np.random.default_rng(seed)
  out = []
  for table in tables:
    out.extend(_curate_table(table, rng, target_fidelity, candidate_subsets, row_subsets))
  names = [e.name for e in out]
  if len(set(names)) != len(names):
    raise ValueError("experiment names collide; pass tables with distinct names")
  return out


def nearest_context(experiment: Experiment, table: TaskTable, k: int) -> Experiment:
  """The experiment with only its `k` cheap fidelities nearest the target (distance in log
  scale), for prompts that must stay short; k = 0 keeps them all."""
  if k <= 0 or len(experiment.context_fidelities) <= k:
    return experiment
  target = np.log(table.fidelity_scale[experiment.target_fidelity])
  distance = [np.sum((np.log(table.fidelity_scale[f]) - target) ** 2)
              for f in experiment.context_fidelities]
  keep = tuple(sorted(experiment.context_fidelities[i] for i in np.argsort(distance)[:k]))
  rows = np.asarray(experiment.context_rows)
  return dataclasses.replace(experiment, context_fidelities=keep,
                             context_rows=rows[np.isin(table.fidelity_index[rows], keep)])


def check_budgets(budgets: Sequence[int]) -> None:
  """Raises ValueError naming the budgets outside 1..MAX_BUDGET."""
  bad = [b for b in budgets if not 1 <= b <= MAX_BUDGET]
  if bad:
    raise ValueError(f"budgets {tuple(budgets)}: {bad} outside 1..{MAX_BUDGET}")


def at_budgets(experiments: Sequence[Experiment], budgets: Sequence[int]) -> list[Experiment]:
  """Each experiment played at each of `budgets` (experiment-major order); an empty `budgets`
  keeps every experiment's own budget. Raises ValueError (check_budgets) on a bad budget."""
  check_budgets(budgets)
  if not budgets:
    return list(experiments)
  return [dataclasses.replace(e, budget=int(b)) for e in experiments for b in budgets]


def describe(experiments: Sequence[Experiment]) -> str:
  """A readable summary: counts per split and task, and every test experiment."""
  lines = [f"{'split':6s} {'task':20s} {'experiments':>11s} {'targets':>7s} {'metrics':>7s} "
           f"{'candidates':>11s} {'cheap fids':>10s}"]
  groups: dict[tuple[str, str], list[Experiment]] = {}
  for e in experiments:
    groups.setdefault((e.split, e.task), []).append(e)
  for (split, task), exps in sorted(groups.items(), key=lambda kv: (kv[0][0] != "test", kv[0])):
    n_cand = [len(e.candidate_rows) for e in exps]
    n_ctx = [len(e.context_fidelities) for e in exps]
    lines.append(f"{split:6s} {task:20s} {len(exps):11d} "
                 f"{len({e.target_fidelity for e in exps}):7d} {len({e.metric for e in exps}):7d} "
                 f"{min(n_cand):>5d}-{max(n_cand):<5d} {min(n_ctx):>4d}-{max(n_ctx):<5d}")
  totals = {s: sum(e.split == s for e in experiments) for s in ("train", "test")}
  lines.append(f"total: {totals['train']} train, {totals['test']} test")
  lines.append("")
  lines.append("test experiments:")
  for e in experiments:
    if e.split == "test":
      budget = "" if e.param_budget is None else f", params <= {e.param_budget:.4g}"
      lines.append(f"  {e.name}: {len(e.candidate_rows)} candidates, "
                   f"{len(e.context_fidelities)} cheap fidelities ({len(e.context_rows)} "
                   f"results){budget}")
  return "\n".join(lines)
