"""How a task's landscape looks and shifts across fidelities: summaries for gym_info."""

from __future__ import annotations

import numpy as np
import scipy.stats

from autollm_jax.gym import table as table_lib


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation of two equal-length samples (nan if either is constant)."""
  if np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")  # scipy would warn, then return nan
  return float(scipy.stats.spearmanr(a, b).statistic)


def _grid_positions(configs: np.ndarray) -> np.ndarray:
  """Each value's position in the sorted distinct values of its column (per fidelity)."""
  return np.stack([np.unique(col, return_inverse=True)[1] for col in configs.T], axis=1)


def shared_configurations(table: table_lib.TaskTable, fa: int, fb: int,
                          metric: str | None = None):
  """Outcomes of configurations found at both fidelities.

  Configurations are matched by value (to 3 significant digits, since sources round grid
  values differently); where fewer than three match (the spaces differ, as in arch_hwgpt), by
  their position in each parameter's grid instead.
  Returns:
    (ya float64[k], yb float64[k], how) with how "value" or "grid position".
  """
  ca, cb = table.configs_at(fa), table.configs_at(fb)
  ya, yb = table.outcomes_at(fa, metric), table.outcomes_at(fb, metric)
  rounded = lambda c: np.vectorize(lambda v: float(f"{v:.3g}"))(c)
  for how, ka, kb in (("value", rounded(ca), rounded(cb)), ("grid position", _grid_positions(ca),
                                          _grid_positions(cb))):
    index_b = {tuple(row): i for i, row in enumerate(kb)}
    pairs = [(i, index_b[tuple(row)]) for i, row in enumerate(ka) if tuple(row) in index_b]
    if len(pairs) >= 3:
      ia, ib = np.array(pairs).T
      return ya[ia], yb[ib], how
  return np.zeros(0), np.zeros(0), "none"


def neighbour_correlations(table: table_lib.TaskTable, metric: str | None = None):
  """Rank correlation between each fidelity and the next (in cost order) on shared configs.

  Returns:
    [(fidelity_a, fidelity_b, spearman, n_shared, how)] for neighbouring pairs.
  """
  order = table.fidelity_order()
  out = []
  for fa, fb in zip(order[:-1], order[1:]):
    ya, yb, how = shared_configurations(table, int(fa), int(fb), metric)
    rho = spearman(ya, yb) if len(ya) >= 3 else float("nan")
    out.append((table.fidelity_names[fa], table.fidelity_names[fb], rho, len(ya), how))
  return out


def best_configuration(table: table_lib.TaskTable, fidelity: int, metric: str | None = None):
  """(config float64[P], outcome) of the best run at one fidelity."""
  y = table.outcomes_at(fidelity, metric) * table.metric(metric).sign()
  i = int(np.argmin(y))
  return table.configs_at(fidelity)[i], float(table.outcomes_at(fidelity, metric)[i])


def summary(table: table_lib.TaskTable) -> dict:
  """A JSON-ready description of a task (what `launch/gym_info.py --json` prints per task)."""
  metric = table.metric()
  y = table.outcomes[:, table.metric_column()]
  best = {}
  for f, name in enumerate(table.fidelity_names):
    config, value = best_configuration(table, f)
    best[name] = {"config": dict(zip(table.param_names, map(float, config))), metric.name: value}
  return {
      "rows": table.source_rows,
      "fidelities": list(table.fidelity_names),
      "configs_per_fidelity": table.configs_per_fidelity(),
      "params": {p.name: p.scale for p in table.params},
      "metric": metric.name,
      "direction": metric.direction,
      "metrics": list(table.metric_names),
      "metric_range": [float(y.min()), float(y.max())],
      "fidelity_scale": {n: dict(zip(table.fidelity_scale_names, map(float, s)))
                         for n, s in zip(table.fidelity_names, table.fidelity_scale)},
      "best": best,
      "neighbour_rank_correlation": [
          {"from": a, "to": b, "spearman": None if np.isnan(r) else round(r, 4),
           "shared": n, "matched_by": how}
          for a, b, r, n, how in neighbour_correlations(table)],
  }
