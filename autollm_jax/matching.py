"""Most-similar-configuration matching: a proposed configuration -> the nearest valid candidate.

Each parameter is measured on its own scale: log10 for log parameters, linear otherwise, and
then divided by the spread of that parameter over the experiment's candidates, so that every
parameter weighs the same whatever its units. A categorical parameter contributes 0 when the
value equals the candidate's and 1 otherwise. The same code runs on the host (NumPy) and on
the device (jax.numpy, inside jit): pass the array namespace as `xp`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autollm_jax.gym.table import Param


def feature_transform(params: Sequence[Param], candidate_configs: np.ndarray) -> np.ndarray:
  """The per-parameter transform for one experiment's candidates.

  Args:
    params: the task's parameters (P of them).
    candidate_configs: float[n, P] the candidates in natural units.
  Returns:
    float64[4, P]: rows (is_log, is_categorical, offset, scale). A feature is
    (unit(value) - offset) / scale, unit = log10 for log params; categorical ones stay raw.
  """
  is_log = np.array([p.scale == "log" for p in params], dtype=np.float64)
  is_cat = np.array([p.scale == "categorical" for p in params], dtype=np.float64)
  unit = np.where(is_log > 0, np.log10(np.where(is_log > 0, candidate_configs, 1.0)),
                  candidate_configs)
  lo, hi = unit.min(axis=0), unit.max(axis=0)
  scale = np.where((hi > lo) & (is_cat == 0), hi - lo, 1.0)
  offset = np.where(is_cat > 0, 0.0, lo)
  return np.stack([is_log, is_cat, offset, scale])


def features(configs, transform, xp=np):
  """float[..., P] features of configurations (natural units) under `transform` [4, P]."""
  is_log, is_cat, offset, scale = transform[0], transform[1], transform[2], transform[3]
  safe = xp.where(is_log > 0, xp.maximum(configs, 1e-300), 1.0)
  unit = xp.where(is_log > 0, xp.log10(safe), configs)
  return xp.where(is_cat > 0, unit, (unit - offset) / scale)


def clip_query(query_features, feature_hi, transform, xp=np):
  """float[P] a query's numeric features clipped to the candidates' range [0, feature_hi].

  A value outside every candidate's range then matches as if it were at the range's edge
  (and a huge value cannot overflow float32 on the device). Categorical features are kept.
  Args:
    query_features: float[P] from `features`.
    feature_hi: float[P] the largest candidate feature of each parameter (features of the
      candidates start at 0).
    transform: float[4, P] from `feature_transform`.
  """
  return xp.where(transform[1] > 0, query_features, xp.clip(query_features, 0.0, feature_hi))


def not_run(num_candidates: int, run: Sequence[int | None]) -> np.ndarray:
  """bool[n] the candidates not among `run` (None entries, unparsed trials, are ignored); all
  of them once every one has run. The rule by which a trial's proposal is matched."""
  left = np.ones(num_candidates, bool)
  left[[i for i in run if i is not None]] = False
  return left if left.any() else np.ones(num_candidates, bool)


def nearest(candidate_features, query_features, transform, valid=None, xp=np):
  """Index of the candidate nearest to the query.

  Args:
    candidate_features: float[n, P] features of the candidates.
    query_features: float[P] features of the proposed configuration.
    transform: float[4, P] from `feature_transform` (row 1 marks categorical params).
    valid: optional bool[n]; invalid candidates (padding) are never chosen.
    xp: numpy or jax.numpy.
  Returns:
    int index into the candidates; ties go to the lowest index.
  """
  is_cat = transform[1]
  diff = candidate_features - query_features[None, :]
  per_param = xp.where(is_cat > 0, (xp.abs(diff) > 1e-9).astype(diff.dtype), diff * diff)
  dist = per_param.sum(axis=-1)
  if valid is not None:
    dist = xp.where(valid, dist, xp.inf)
  return xp.argmin(dist)
