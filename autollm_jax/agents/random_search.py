"""Random search: a uniformly random untried candidate each trial."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autollm_jax.agents import base


class RandomSearch(base.Agent):
  name = "random"

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    i = int(rng.choice(base.untried(obs, history)))
    return base.Proposal(obs.candidates[i], "a candidate drawn uniformly at random")
