"""The teacher: reasons across fidelities, writes its reasoning, then refines on the target.

1. Where is the optimum at each cheap fidelity? Per parameter, the rank-weighted mean of the
   top configurations in the parameter's own scale (log10 for log parameters); under a
   parameter budget, among the configurations within the same quantile of parameter counts.
2. The trend: a least-squares fit of those optima against the log fidelity scales (log N,
   log D), extrapolated to the target and clipped to the candidates' range.
3. A prior landscape at the target: a GP fitted to the nearest cheap fidelity's results,
   shifted so that its optimum moves where the trend says. Where no single parameter carries
   the signal (many parameters, e.g. 19 mixture weights) it is instead a regression of every
   cheap fidelity's results (as RegMix does), combined across fidelities by closeness to the
   target in log scale. Each regression is a GP in the feature space of its fidelity's own
   configurations, so that experiments that share cheap results (most training experiments
   of a task do) share the fit.
4. Refinement: the prior plus a GP on the residuals of the target results seen so far; the
   next proposal is the untried candidate with the best posterior mean.

The teacher keeps the priors (keyed by Observation.fingerprint: episodes of one experiment,
whatever their seed or budget, share one) and the cheap-fidelity regressions it made.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence, TypeVar

import numpy as np

from autollm_jax import matching
from autollm_jax import protocol
from autollm_jax.agents import base
from autollm_jax.agents import gp_model

TOP = 5
TREND_MAX_PARAMS = 6
RIDGE = 1e-3
# How many experiment priors (small) and cheap-fidelity GPs (up to 0.5 MB) are kept, the most
# recently used: priors enough for every training experiment of the gym.
PRIOR_CACHE_SIZE = 256
GP_CACHE_SIZE = 32

_T = TypeVar("_T")


def _memo(cache: dict[bytes, _T], key: bytes, make: Callable[[], _T], size: int) -> _T:
  """cache[key], made on a miss; the cache keeps its `size` most recently used entries."""
  value = cache.pop(key) if key in cache else make()
  cache[key] = value
  if len(cache) > size:
    del cache[next(iter(cache))]
  return value


@dataclasses.dataclass(frozen=True)
class Prior:
  """The teacher's view of the target before any trial.

  Attributes:
    mean: float64[n] predicted y (lower is better) at every candidate, natural units.
    theta: GP hyperparameters for the residual model.
    scale: the natural-unit scale of the GP's standardized targets.
    features: float64[n, P] the candidates in the residual model's feature space.
    reasoning: text with the numbers used.
  """

  mean: np.ndarray
  theta: dict
  scale: float
  features: np.ndarray
  reasoning: str


def optimum_location(obs: base.Observation, cheap: base.CheapResults) -> np.ndarray:
  """float64[P] the robust optimum at one cheap fidelity, in each parameter's unit scale
  (categorical parameters: the choice with the most weight among the top configurations)."""
  rows = np.flatnonzero(cheap.in_budget)
  top = rows[np.argsort(cheap.y[rows], kind="stable")[:TOP]]
  weights = np.arange(len(top), 0, -1, dtype=np.float64)
  weights /= weights.sum()
  out = np.empty(len(obs.params))
  for j, p in enumerate(obs.params):
    values = cheap.configs[top, j]
    if p.scale == "categorical":
      choices = np.unique(values)
      out[j] = choices[np.argmax([weights[values == c].sum() for c in choices])]
    else:
      out[j] = weights @ p.to_unit(values)
  return out


def _log_scales(obs: base.Observation) -> tuple[np.ndarray, np.ndarray]:
  """float[c, S] cheap and float[S] target log10 scales, centred at the target."""
  target = np.log10(obs.target_scale)
  return np.stack([np.log10(c.scale) for c in obs.context]) - target, target


def trend_fit(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
  """Least squares of values [c, ...] on x [c, S] (centred at the target; slopes slightly
  ridged so that an axis the cheap fidelities do not vary along gets slope 0).

  Returns:
    float[S, ...] slopes per log10 scale unit, and the intercept: the value at the target.
  """
  design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
  penalty = RIDGE * np.diag([0.0] + [1.0] * x.shape[1])
  coef = np.linalg.solve(design.T @ design + penalty, design.T @ values.reshape(len(x), -1))
  coef = coef.reshape((x.shape[1] + 1,) + values.shape[1:])
  return coef[1:], coef[0]


def _fmt_scale(obs: base.Observation, scale: np.ndarray) -> str:
  return ",".join(f"{n}={v:.3g}" for n, v in zip(obs.scale_names, scale))


def _value_text(p, unit: float) -> str:
  return f"{10 ** unit:.3g}" if p.scale == "log" else f"{unit:.3g}"


class Teacher(base.Agent):
  """Cross-fidelity trend extrapolation with refinement (see the module docstring)."""

  name = "teacher"

  def __init__(self, reasoning: str = "full"):
    """Args:
      reasoning: "full" writes the cross-fidelity analysis with its numbers (first turn) and
        the refinement (later turns); "brief" writes only the predicted outcome of its
        choice, for policies that must reason in few tokens; "none" writes no reasoning
        (the action alone, an ablation of the reasoning).
    """
    if reasoning not in ("full", "brief", "none"):
      raise ValueError(f"reasoning={reasoning!r}: use 'full', 'brief' or 'none'")
    self.reasoning = reasoning
    self._priors: dict[bytes, Prior] = {}
    self._cheap_gps: dict[bytes, gp_model.GP] = {}

  def prior(self, obs: base.Observation) -> Prior:
    """The prior of an experiment, made once (episodes of one experiment share it)."""
    numeric = sum(p.scale != "categorical" for p in obs.params)
    make = (self._trend_prior if numeric <= TREND_MAX_PARAMS else self._regression_prior)
    return _memo(self._priors, obs.fingerprint, lambda: make(obs), PRIOR_CACHE_SIZE)

  def _trend_prior(self, obs: base.Observation) -> Prior:
    optima = np.stack([optimum_location(obs, c) for c in obs.context])
    x, _ = _log_scales(obs)
    slopes, at_target = trend_fit(x, optima)
    units = np.stack([p.to_unit(obs.candidates[:, j]) for j, p in enumerate(obs.params)], 1)
    lines = []
    budget = ("" if obs.budget_quantile is None else
              f" within the parameter budget (the {100 * obs.budget_quantile:.0f}th percentile "
              f"of each size's parameter counts)")
    for j, p in enumerate(obs.params):
      if p.scale == "categorical":
        at_target[j] = optima[np.argmin(np.abs(x).sum(axis=1)), j]
        lines.append(f"{p.name}: best choice {at_target[j]:g} at the nearest cheap fidelity")
        continue
      fitted = at_target[j]
      at_target[j] = np.clip(fitted, units[:, j].min(), units[:, j].max())
      clipped = ("" if at_target[j] == fitted else
                 f", clipped from {_value_text(p, fitted)} to the candidates' range")
      trail = "; ".join(f"{_value_text(p, optima[i, j])} at {_fmt_scale(obs, c.scale)}"
                        for i, c in enumerate(obs.context))
      if p.scale == "log":
        law = " ".join(f"{n}^{s:+.2f}" for n, s in zip(obs.scale_names, slopes[:, j]))
        fit = f"the fit {p.name} ~ {law}"
      else:
        law = " ".join(f"{s:+.3g}*log10({n})" for n, s in zip(obs.scale_names, slopes[:, j]))
        fit = f"the fit {p.name} = c {law}"
      lines.append(f"optimal {p.name}{budget} went {trail}; {fit} gives "
                   f"{_value_text(p, at_target[j])} at the target "
                   f"{_fmt_scale(obs, obs.target_scale)}{clipped}")
    # Shift the nearest cheap landscape so that its optimum lands on the extrapolated one.
    cheap = base.nearest_fidelity(obs)
    natural = np.array([10 ** u if p.scale == "log" else u
                        for p, u in zip(obs.params, at_target)])
    cheap_opt = np.array([10 ** u if p.scale == "log" else u
                          for p, u in zip(obs.params, optimum_location(obs, cheap))])
    is_cat = np.array([p.scale == "categorical" for p in obs.params])
    shift = np.where(is_cat, 0.0, obs.features(natural) - obs.features(cheap_opt))
    gp = gp_model.fit(obs.features(cheap.configs), gp_model.clip_outcomes(cheap.y))
    feats = obs.features(obs.candidates)
    mean, _ = gp.predict(feats - shift)
    lines.append(f"So I take the landscape measured at {cheap.name}, moved by that shift")
    return Prior(mean, gp.theta, gp.scale, feats, ". ".join(lines) + ".")

  def _cheap_gp(self, obs: base.Observation, cheap: base.CheapResults
                ) -> tuple[gp_model.GP, np.ndarray]:
    """A GP of one cheap fidelity's (clipped) results in the feature space of its own
    configurations, fitted once per distinct results, and float64[n, P] the candidates in
    that space."""
    transform = matching.feature_transform(obs.params, cheap.configs)
    y = gp_model.clip_outcomes(cheap.y)
    key = hashlib.sha1(b"".join([str(cheap.configs.shape).encode(), transform.tobytes(),
                                 cheap.configs.tobytes(), y.tobytes()])).digest()
    gp = _memo(self._cheap_gps, key,
               lambda: gp_model.fit(matching.features(cheap.configs, transform), y),
               GP_CACHE_SIZE)
    return gp, matching.features(obs.candidates, transform)

  def _regression_prior(self, obs: base.Observation) -> Prior:
    means, fits = [], []
    for cheap in obs.context:
      gp, feats = self._cheap_gp(obs, cheap)
      means.append(gp.predict(feats)[0])
      fits.append((gp, feats))
    # Cross-size rank correlations are weak here (about 0.6), and a straight line through
    # noisy per-fidelity predictions amplifies their noise (on ADMIRE it lowered the rank
    # correlation with the 7B outcomes); so the trend is a zero-slope fit in log scale that
    # weighs each fidelity by its closeness to the target.
    x, _ = _log_scales(obs)
    closeness = 1.0 / np.maximum(np.linalg.norm(x, axis=1), 1e-3)
    weights = closeness / closeness.sum()
    z = np.stack([(m - m.mean()) / max(m.std(), 1e-12) for m in means])
    nearest = int(np.argmax(weights))
    combined = (weights @ z) * means[nearest].std() + means[nearest].mean()
    best = int(np.argmin(combined))
    sign = obs.metric.sign()
    trail = "; ".join(f"{sign * m[best]:.4g} at {_fmt_scale(obs, c.scale)} (weight {w:.2f})"
                      for m, c, w in zip(means, obs.context, weights))
    text = (f"no single parameter carries the signal, so I regress {obs.metric.name} on the "
            f"{len(obs.params)} parameters at each cheap fidelity (a GP per fidelity, as "
            f"RegMix does with its regressors) and combine the standardized predictions, "
            f"weighting each fidelity by its closeness in log scale to the target "
            f"{_fmt_scale(obs, obs.target_scale)}. The top candidate "
            f"({obs.format_config(obs.candidates[best])}) is predicted {trail}")
    gp, feats = fits[nearest]
    return Prior(combined, gp.theta, gp.scale, feats, text + ".")

  def posterior_mean(self, obs: base.Observation, history: Sequence[base.Trial]
                     ) -> np.ndarray:
    """float64[n] predicted y at every candidate, the prior corrected by the trials."""
    prior = self.prior(obs)
    if not history:
      return prior.mean
    mean, _ = gp_model.refine(prior.mean, prior.features,
                              np.array([t.candidate for t in history]),
                              np.array([t.y for t in history]), prior.theta, prior.scale)
    return mean

  def rank(self, obs: base.Observation, history: Sequence[base.Trial]
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """Untried candidates best first, their predicted outcomes, and the reasoning."""
    mean = self.posterior_mean(obs, history)
    left = base.untried(obs, history)
    order = left[np.argsort(mean[left], kind="stable")]
    text = self.prior(obs).reasoning
    if history:
      text += " " + self._refinement(obs, history)
    predicted = obs.metric.sign() * mean[order]
    return order, predicted, text

  def _refinement(self, obs: base.Observation, history: Sequence[base.Trial]) -> str:
    best = min(history, key=lambda t: t.y)
    return (f"After {len(history)} trial(s) the best is {obs.format_config(best.config)} "
            f"with {obs.metric.name}={best.outcome:.4g}; I correct the prediction by the "
            f"gaps between predicted and measured outcomes.")

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    del rng
    order, predicted, text = self.rank(obs, history)
    if history:
      # The cross-fidelity analysis was written in the first turn, which stays in the context.
      text = self._refinement(obs, history)
    if self.reasoning == "none":
      return base.Proposal(obs.candidates[order[0]], "")
    # In the protocol's fixed outcome format, as the feedback writes outcomes: a number of
    # varying length is where a small policy, writing freely, loses track of the turn.
    prediction = f"{obs.metric.name}={protocol.format_outcome(predicted[0])}"
    if self.reasoning == "brief":
      # The action that follows names the configuration: restating it would only lengthen
      # the turn (and ask a small policy to convert between number formats).
      return base.Proposal(obs.candidates[order[0]], f"Predicted {prediction}.")
    return base.Proposal(obs.candidates[order[0]],
                         f"{text} Next: {obs.format_config(obs.candidates[order[0]])} "
                         f"(predicted {prediction}).")
