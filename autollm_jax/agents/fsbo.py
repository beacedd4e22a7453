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


def _init(key: jax.Array, num_params: int) -> dict:
  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (num_params, HIDDEN)) / np.sqrt(num_params),
      "b1": jnp.zeros(HIDDEN),
      "w2": jax.random.normal(k2, (HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
      "b2": jnp.zeros(HIDDEN),
      # float32, not weakly typed: the trained model then has the same types, and fine-tuning
      # reuses meta-training's compiled step.
      "theta": jax.tree.map(lambda v: jnp.asarray(v, jnp.float32),
                            gp_model.init_theta(HIDDEN, lengthscale=float(np.sqrt(HIDDEN))))}


def embed(model: dict, x: jax.Array) -> jax.Array:
  """float[n, HIDDEN] deep-kernel features of x [n, P]."""
  h = jnp.tanh(x @ model["w1"] + model["b1"])
  return jnp.tanh(h @ model["w2"] + model["b2"])


def _loss(model: dict, x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
  """Negative log marginal likelihood plus hyperprior, per real row, of a padded batch x [B, P]
  -> y [B] (mask [B]: 0 for padding; a padded row gets no covariance with the others, unit
  variance and target 0, which leaves the real rows' likelihood unchanged)."""
  theta = model["theta"]
  z = embed(model, x)
  k = gp_model.kernel(z, z, theta["log_lengthscale"], theta["log_signal"], "rbf", xp=jnp)
  noise = jnp.exp(theta["log_noise"]) + gp_model.JITTER
  gram = k * mask[:, None] * mask[None, :] + jnp.diag(mask * noise + 1.0 - mask)
  chol = jnp.linalg.cholesky(gram)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  nll = 0.5 * jnp.dot(y * mask, alpha) + jnp.sum(jnp.log(jnp.diag(chol)))
  return (nll + gp_model.hyperprior(theta, xp=jnp)) / jnp.maximum(mask.sum(), 1.0)


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
  y = gp_model.clip_outcomes(y)
  return (y - y.mean()) / max(y.std(), 1e-12)


def _batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
  """A padded batch of at most BATCH rows: x [BATCH, P], y [BATCH], mask [BATCH]."""
  take = rng.permutation(len(y))[:BATCH]
  xb, yb, mask = np.zeros((BATCH, x.shape[1])), np.zeros(BATCH), np.zeros(BATCH)
  xb[:len(take)], yb[:len(take)], mask[:len(take)] = x[take], y[take], 1.0
  return xb, yb, mask


class FSBO(base.Agent):
  name = "fsbo"

  def __init__(self, seed: int = 0, meta_steps: int = META_STEPS,
               finetune_steps: int = FINETUNE_STEPS):
    """An FSBO agent (meta-train it with `fit`).

    Args:
      seed: seeds the MLP's initialization and the order of the batches.
      meta_steps: Adam steps (one batch each) of meta-training, per task.
      finetune_steps: Adam steps of fine-tuning on an experiment's cheap results.
    """
    self.seed = seed
    self.meta_steps = meta_steps
    self.finetune_steps = finetune_steps
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
      batches = [_batch(*data[rng.integers(len(data))], rng) for _ in range(self.meta_steps)]
      xs, ys, masks = (jnp.asarray(np.stack(b)) for b in zip(*batches))
      model = _init(jax.random.PRNGKey(self.seed), len(table.params))
      with gp_model.single_threaded_blas():
        self.models[task] = jax.block_until_ready(_train(model, xs, ys, masks, 1e-3))

  def _prior(self, obs: base.Observation, rng: np.random.Generator):
    if self._cached is None or self._cached[0] is not obs:
      model = self.models.get(obs.task)
      if model is None:
        model = _init(jax.random.PRNGKey(self.seed), len(obs.params))
      cheap = base.nearest_fidelity(obs)
      x, y = obs.features(cheap.configs), _standardize(cheap.y)
      batches = [_batch(x, y, rng) for _ in range(self.finetune_steps)]
      xs, ys, masks = (jnp.asarray(np.stack(b)) for b in zip(*batches))
      with gp_model.single_threaded_blas():
        model = jax.block_until_ready(_train(model, xs, ys, masks, 1e-3))
      scale = float(np.std(gp_model.clip_outcomes(cheap.y)))
      gp = gp_model.fit(np.asarray(embed(model, jnp.asarray(x))), y, kind="rbf",
                        optimize=False, theta=model["theta"], offset=0.0, scale=1.0)
      feats = np.asarray(embed(model, jnp.asarray(obs.features(obs.candidates))))
      mean, std = gp.predict(feats)
      self._cached = (obs, model, feats, mean * scale, std * scale, scale)
    return self._cached[1:]

  def propose(self, obs: base.Observation, history: Sequence[base.Trial],
              rng: np.random.Generator) -> base.Proposal:
    model, feats, mean, std, scale = self._prior(obs, rng)
    if history:
      mean, std = gp_model.refine(mean, feats, np.array([t.candidate for t in history]),
                                  np.array([t.y for t in history]), model["theta"], scale,
                                  "rbf")
      best = min(t.y for t in history)
    else:
      best = float(mean.min())
    left = base.untried(obs, history)
    ei = gp_model.expected_improvement(mean[left], std[left], best)
    i = int(left[np.argmax(ei)])
    return base.Proposal(obs.candidates[i], f"largest expected improvement ({ei.max():.3g}) "
                         f"under the meta-trained deep-kernel GP")
