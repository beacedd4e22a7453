"""A plain-Python environment with the device environment's behaviour: strings in, strings out.

Written apart from `autollm_jax.env` (regular expressions, float(), NumPy in float64) so that
the two check each other; the behaviour both follow is stated in `autollm_jax.env`'s
docstring and the text in `autollm_jax.protocol`'s. It is also the simplest way to run an
agent on the host one experiment at a time.
"""

from __future__ import annotations

import numpy as np

from autollm_jax import matching
from autollm_jax import protocol
from autollm_jax import regret
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable


class ReferenceEnv:
  """One experiment's episode: `prompt()`, then `step(turn)` -> feedback until done."""

  def __init__(self, table: TaskTable, experiment: Experiment, *,
               reward_mode: str = "terminal", regret_kind: str = "strict"):
    self.table = table
    self.experiment = experiment
    self.reward_mode = reward_mode
    self.regret_kind = regret_kind
    self.metric = table.metric(experiment.metric)
    rows = np.asarray(experiment.candidate_rows)
    configs = table.configs[rows]
    self.outcomes = table.outcomes[rows, table.metric_column(experiment.metric)]
    self._y = self.metric.sign() * self.outcomes
    self._y_star, self._y_worst, self._y_median = regret.normalizers(self.outcomes,
                                                                     self.metric.sign())
    self._transform = matching.feature_transform(table.params, configs)
    self._features = matching.features(configs, self._transform)
    self._numeric = self._transform[1] == 0
    self._hi = self._features.max(axis=0)
    self.reset()

  def prompt(self, max_rows: int = 16) -> str:
    """The experiment's prompt (`protocol.render_prompt`)."""
    return protocol.render_prompt(self.table, self.experiment, max_rows)

  def reset(self) -> None:
    """Starts the episode again."""
    self.trial = 0
    self.best: int | None = None
    self.history: list[int | None] = []

  @property
  def done(self) -> bool:
    return self.trial >= self.experiment.budget

  def parse(self, turn: str) -> tuple[str, ...] | None:
    """The number texts of the action after the turn's first `<execute>`, or None."""
    return protocol.parse_action(turn, self.table.param_names)

  def _query(self, numbers: tuple[str, ...]) -> np.ndarray:
    """Features of a parsed action, clipped to the candidates' range (numeric parameters)."""
    query = matching.features(np.array([float(s) for s in numbers]), self._transform)
    return matching.clip_query(query, self._hi, self._transform)

  def untried(self) -> np.ndarray:
    """bool[n] the candidates not run yet in this episode (all once every one has run)."""
    return matching.not_run(len(self._y), self.history)

  def match(self, numbers: tuple[str, ...]) -> int:
    """The candidate not run yet that is nearest to a parsed action."""
    return int(matching.nearest(self._features, self._query(numbers), self._transform,
                                valid=self.untried()))

  def distances(self, numbers: tuple[str, ...]) -> np.ndarray:
    """float64[n] every candidate's distance to a parsed action (as `matching.nearest`)."""
    diff = self._features - self._query(numbers)
    return np.where(self._numeric, diff ** 2, np.abs(diff) > 1e-9).sum(axis=1)

  def regret(self) -> float:
    """The regret of the best found so far (1 before any trial parsed)."""
    if self.best is None:
      return 1.0
    y = self._y[self.best]
    if self.regret_kind == "strict":
      return float(regret.strict_regret(y, self._y_star, self._y_median))
    return float(regret.normalized_regret(y, self._y_star, self._y_worst))

  def step(self, turn: str) -> tuple[str, float, bool]:
    """Runs one trial of the turn's action; returns (feedback text, reward, done)."""
    if self.done:
      return "", 0.0, True
    regret_before = self.regret() if self.trial else 0.0
    numbers = self.parse(turn)
    index = None if numbers is None else self.match(numbers)
    if index is not None and (self.best is None or self._y[index] < self._y[self.best]):
      self.best = index
    self.history.append(index)
    self.trial += 1
    if self.reward_mode == "shaped":
      reward = regret_before - self.regret()
    else:
      reward = -self.regret() if self.done else 0.0
    feedback = protocol.render_feedback(
        self.metric.name, None if index is None else self.outcomes[index],
        None if self.best is None else self.outcomes[self.best],
        self.experiment.budget - self.trial)
    return feedback, reward, self.done
