"""FSBO: few-shot BO with a deep-kernel GP (MLP features + RBF), meta-trained per task.

Meta-training (`fit`): for each task, Adam (optax) on the GP marginal likelihood of batches of
candidates of random training experiments (outcomes standardized per experiment), over the
MLP weights and the kernel's hyperparameters. On an experiment, the kernel is fine-tuned on
the nearest cheap fidelity's results, a GP with that kernel on them is the prior mean, and
target trials are modelled as in GP-BO (offset plus residual GP); the next trial maximizes
expected improvement among untried candidates.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autollm_jax.agents import base
from autollm_jax.agents import gp_model
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable

HIDDEN = 32
BATCH = 64
META_STEPS = 300
FINETUNE_STEPS = 50
CLIP_QUANTILE = 0.75


def _init(key: jax.Array, num_params: int) -> dict:
  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (num_params, HIDDEN)) / np.sqrt(num_params),
      "b1": jnp.zeros(HIDDEN),
      "w2": jax.random.normal(k2, (HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
      "b2": jnp.zeros(HIDDEN),
      "theta": gp_model.init_theta(HIDDEN, lengthscale=float(np.sqrt(HIDDEN)))}


def embed(model: dict, x: jax.Array) -> jax.Array:
  """float[n, HIDDEN] deep-kernel features of x [n, P]."""
  h = jnp.tanh(x @ model["w1"] + model["b1"])
  return jnp.tanh(h @ model["w2"] + model["b2"])


def _loss(model, x, y, mask):
  return gp_model.neg_log_likelihood(model["theta"], embed(model, x), y, mask, "rbf")


@functools.partial(jax.jit, static_argnames=("learning_rate",))
def _train(model, xs, ys, masks, learning_rate):
  """Adam over batches xs [T, B, P], ys [T, B], masks [T, B], one step per batch."""
  opt = optax.adam(learning_rate)

  def step(carry, batch):
    model, state = carry
    grads = jax.grad(_loss)(model, *batch)
    updates, state = opt.update(grads, state)
    return (optax.apply_updates(model, updates), state), None

  (model, _), _ = jax.lax.scan(step, (model, opt.init(model)), (xs, ys, masks))
  return model


def _standardize(y: np.ndarray) -> np.ndarray:
  y = np.minimum(y, np.quantile(y, CLIP_QUANTILE))
  return (y - y.mean()) / max(y.std(), 1e-12)


def _batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
  """A padded batch of at most BATCH rows: x [BATCH, P], y [BATCH], mask [BATCH]."""
  take = rng.permutation(len(y))[:BATCH]
  xb, yb, mask = np.zeros((BATCH, x.shape[1])), np.zeros(BATCH), np.zeros(BATCH)
  xb[:len(take)], yb[:len(take)], mask[:len(take)] = x[take], y[take], 1.0
  return xb, yb, mask


class FSBO(base.Agent):
  name = "fsbo"

  def __init__(self, seed: int = 0):
    self.seed = seed
    self.models: dict[str, dict] = {}
    self._cached = None

  def fit(self, experiments: Sequence[Experiment], tables: Mapping[str, TaskTable]) -> None:
    rng = np.random.default_rng(self.seed)
    for task in sorted({e.task for e in experiments}):
      table = tables[task]
      data = []
      for e in experiments:
        if e.task == task and e.split == "train":
          obs = base.Observation.from_experiment(e, table)
          y = table.metric(e.metric).sign() * table.outcomes[
              e.candidate_rows, table.metric_column(e.metric)]
          data.append((obs.features(obs.candidates), _standardize(y)))
      batches = [_batch(*data[rng.integers(len(data))], rng) for _ in range(META_STEPS)]
      xs, ys, masks = (jnp.asarray(np.stack(b)) for b in zip(*batches))
      model = _init(jax.random.PRNGKey(self.seed), len(table.params))
      self.models[task] = _train(model, xs, ys, masks, 1e-3)

  def _prior(self, obs: base.Observation, rng: np.random.Generator):
    if self._cached is None or self._cached[0] is not obs:
      model = self.models.get(obs.task)
      if model is None:
        model = _init(jax.random.PRNGKey(self.seed), len(obs.params))
      cheap = base.nearest_fidelity(obs)
      x, y = obs.features(cheap.configs), _standardize(cheap.y)
      batches = [_batch(x, y, rng) for _ in range(FINETUNE_STEPS)]
      xs, ys, masks = (jnp.asarray(np.stack(b)) for b in zip(*batches))
      model = _train(model, xs, ys, masks, 1e-3)
      scale = float(np.std(np.minimum(cheap.y, np.quantile(cheap.y, CLIP_QUANTILE))))
      gp = gp_model.fit(np.asarray(embed(model, jnp.asarray(x))), y, kind="rbf", steps=0,
                        theta=model["theta"], offset=0.0, scale=1.0)
      feats = np.asarray(embed(model, jnp.asarray(obs.features(obs.candidates))))
      mean, std = gp.predict(feats)
      self._cached = (obs, model, feats, mean * scale, std * scale, scale)
    return self._cached[1:]

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    model, feats, mean, std, scale = self._prior(obs, rng)
    if history:
      idx = np.array([t.candidate for t in history])
      residual = np.array([t.y for t in history]) - mean[idx]
      offset = float(residual.mean())
      gp = gp_model.fit(feats[idx], residual - offset, kind="rbf", steps=0,
                        theta=model["theta"], offset=0.0, scale=scale)
      r_mean, std = gp.predict(feats)
      mean = mean + offset + r_mean
      best = min(t.y for t in history)
    else:
      best = float(mean.min())
    left = base.untried(obs, history)
    ei = gp_model.expected_improvement(mean[left], std[left], best)
    i = int(left[np.argmax(ei)])
    return base.Proposal(obs.candidates[i], f"largest expected improvement ({ei.max():.3g}) "
                         f"under the meta-trained deep-kernel GP")
