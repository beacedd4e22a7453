"""Top-k transfer: the best configurations at the nearest cheap fidelity, in order.

Each is mapped to the nearest target candidate (the shared matching), skipping candidates
already run. Under a parameter budget only cheap configurations within the same quantile of
their fidelity's parameter counts are transferred.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from autollm_jax.agents import base


class TopKTransfer(base.Agent):
  name = "topk"

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    del rng
    cheap = base.nearest_fidelity(obs)
    rows = np.flatnonzero(cheap.in_budget)
    rows = rows[np.argsort(cheap.y[rows], kind="stable")]
    tried = {t.candidate for t in history}
    for rank, row in enumerate(rows):
      i = obs.match(cheap.configs[row])
      if i not in tried:
        return base.Proposal(
            obs.candidates[i], f"the #{rank + 1} configuration at {cheap.name} "
            f"({obs.format_config(cheap.configs[row])}, {obs.metric.name}="
            f"{cheap.outcomes[row]:.4g}) maps to {obs.format_config(obs.candidates[i])}")
    i = obs.match(cheap.configs[rows[0]], exclude=sorted(tried))
    return base.Proposal(obs.candidates[i], "every transferred configuration was run; the "
                         "untried candidate nearest to the best one")
