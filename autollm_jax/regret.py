"""Regret of the best configuration found, as in HPO benchmarks, direction-aware.

For a minimized metric y over the target candidates C with optimum y*:
  normalized regret = (y_best_found - y*) / (y_worst - y*)            in [0, 1]
  strict regret     = min(1, (y_best_found - y*) / (y_median - y*))  in [0, 1]
Strict regret cannot be flattered by diverged runs that inflate y_worst. A maximized metric is
handled by negating it. Works on NumPy and JAX arrays alike (pure array arithmetic).
"""

from __future__ import annotations

import numpy as np


def normalizers(outcomes: np.ndarray, sign: float) -> tuple[float, float, float]:
  """(y*, y_worst, y_median) of sign * outcomes over one experiment's candidates.

  Args:
    outcomes: float[n] the metric at every candidate.
    sign: +1 for a minimized metric, -1 for a maximized one.
  Returns:
    The best, worst and median of sign * outcomes (so smaller is better for all three).
  """
  y = sign * np.asarray(outcomes, dtype=np.float64)
  return float(y.min()), float(y.max()), float(np.median(y))


def _ratio(gap, span):
  """gap / span where span > 0; where span == 0 (ties at the optimum), 1 if gap > 0 else 0."""
  positive = span > 0
  return positive * gap / (span + (1 - positive)) + (1 - positive) * (gap > 0)


def normalized_regret(y_best_found, y_star, y_worst):
  """(y_best_found - y*) / (y_worst - y*) in the minimized convention. Arrays broadcast."""
  return _ratio(y_best_found - y_star, y_worst - y_star)


def strict_regret(y_best_found, y_star, y_median):
  """min(1, (y_best_found - y*) / (y_median - y*)) in the minimized convention."""
  r = _ratio(y_best_found - y_star, y_median - y_star)
  return r * (r < 1) + (r >= 1)
