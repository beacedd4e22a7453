"""GP-BO: expected improvement over the target candidates, the cheap results as prior mean.

The prior mean is a GP fitted to the nearest cheap fidelity (outcomes worse than its 75th
percentile flattened, so diverged runs do not dominate). The target trials are modelled as
that mean plus a constant offset plus a GP on the residuals, with the cheap GP's
hyperparameters; the next trial maximizes expected improvement among untried candidates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autollm_jax.agents import base
from autollm_jax.agents import gp_model


class GPBO(base.Agent):
  name = "gp"

  def __init__(self, kind: str = "matern52"):
    self.kind = kind
    self._cached: tuple[bytes, gp_model.GP, np.ndarray, np.ndarray] | None = None

  def prior_gp(self, obs: base.Observation, cheap: base.CheapResults) -> gp_model.GP:
    """The GP of one cheap fidelity's results (features in the candidates' space)."""
    y = gp_model.clip_outcomes(cheap.y)
    return gp_model.fit(obs.features(cheap.configs), y, kind=self.kind)

  def _prior(self, obs: base.Observation):
    if self._cached is None or self._cached[0] != obs.fingerprint:
      gp = self.prior_gp(obs, base.nearest_fidelity(obs))
      mean, std = gp.predict(obs.features(obs.candidates))
      self._cached = (obs.fingerprint, gp, mean, std)
    return self._cached[1:]

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    del rng
    prior, mean, std = self._prior(obs)
    feats = obs.features(obs.candidates)
    if history:
      mean, std = gp_model.refine(mean, feats, np.array([t.candidate for t in history]),
                                  np.array([t.y for t in history]), prior.theta, prior.scale,
                                  self.kind)
      best = min(t.y for t in history)
    else:
      best = float(mean.min())
    left = base.untried(obs, history)
    ei = gp_model.expected_improvement(mean[left], std[left], best)
    i = int(left[np.argmax(ei)])
    return base.Proposal(obs.candidates[i], f"largest expected improvement "
                         f"({ei.max():.3g}) under a GP with the cheap results as prior mean")
