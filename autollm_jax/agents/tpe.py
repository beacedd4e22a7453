"""TPE through Optuna (an optional extra: `pip install optuna`).

The search space is the candidates' range per parameter (log or linear floats, categorical
choices); each suggestion is matched to the nearest candidate, as every proposal is. The
nearest cheap fidelity's results are given to the sampler as earlier trials (outcomes
standardized), so that its first proposals are not blind; the target trials follow them,
standardized with the same offset and scale after removing their mean gap to the cheap ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autollm_jax.agents import base

try:
  import optuna
except ImportError:  # optional extra
  optuna = None


def _distributions(obs: base.Observation) -> dict:
  out = {}
  for j, p in enumerate(obs.params):
    values = obs.candidates[:, j]
    if p.scale == "categorical":
      out[p.name] = optuna.distributions.CategoricalDistribution(
          tuple(float(v) for v in np.unique(values)))
    elif values.min() == values.max():
      out[p.name] = optuna.distributions.CategoricalDistribution((float(values[0]),))
    else:
      out[p.name] = optuna.distributions.FloatDistribution(
          float(values.min()), float(values.max()), log=p.scale == "log")
  return out


class TPE(base.Agent):
  name = "tpe"

  def __init__(self):
    if optuna is None:
      raise ImportError("the tpe agent needs Optuna: pip install optuna")

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(obs)
    cheap = base.nearest_fidelity(obs)
    y = np.minimum(cheap.y, np.quantile(cheap.y, 0.75))
    offset, scale = y.mean(), max(y.std(), 1e-12)
    sampler = optuna.samplers.TPESampler(seed=int(rng.integers(2**31)), n_startup_trials=0)
    study = optuna.create_study(sampler=sampler)
    for config, value in zip(cheap.configs, y):
      params = {}
      for j, p in enumerate(obs.params):
        d = dists[p.name]
        if isinstance(d, optuna.distributions.FloatDistribution):
          params[p.name] = float(np.clip(config[j], d.low, d.high))
        else:
          params[p.name] = min(d.choices, key=lambda c, v=config[j]: abs(c - v))
      study.add_trial(optuna.trial.create_trial(
          params=params, distributions=dists, value=float((value - offset) / scale)))
    if history:
      gap = np.mean([t.y for t in history]) - offset
      for t in history:
        study.add_trial(optuna.trial.create_trial(
            params={p.name: float(v) for p, v in zip(obs.params, t.config)},
            distributions=dists, value=float((t.y - gap - offset) / scale)))
    trial = study.ask(dists)
    config = np.array([trial.params[p.name] for p in obs.params], np.float64)
    i = obs.match(config, exclude=[t.candidate for t in history])
    return base.Proposal(obs.candidates[i], "TPE's suggestion, nearest untried candidate")
