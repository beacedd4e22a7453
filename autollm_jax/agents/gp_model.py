"""Exact Gaussian-process regression in JAX: Matern-5/2 or RBF kernel with ARD lengthscales.

Hyperparameters are fitted by maximizing the marginal likelihood with Adam (optax). Inputs are
padded to a power-of-two number of rows with a mask, so that a handful of shapes is compiled
whatever the experiment: a padded row gets zero covariance with the others, unit variance and
a zero target, which leaves the likelihood and the posterior of the real rows unchanged.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import norm

_MIN_ROWS = 16
_JITTER = 1e-6


def kernel(x1: jax.Array, x2: jax.Array, log_lengthscale: jax.Array, log_signal: jax.Array,
           kind: str = "matern52") -> jax.Array:
  """float[n1, n2] covariances of x1 [n1, P] and x2 [n2, P]."""
  d = (x1[:, None, :] - x2[None, :, :]) / jnp.exp(log_lengthscale)
  r2 = jnp.sum(d * d, axis=-1)
  if kind == "rbf":
    k = jnp.exp(-0.5 * r2)
  else:
    r = jnp.sqrt(5.0 * r2 + 1e-12)
    k = (1.0 + r + r * r / 3.0) * jnp.exp(-r)
  return jnp.exp(log_signal) * k


def _masked_gram(theta, x, mask, kind):
  k = kernel(x, x, theta["log_lengthscale"], theta["log_signal"], kind)
  k = k * mask[:, None] * mask[None, :]
  noise = jnp.exp(theta["log_noise"]) + _JITTER
  return k + jnp.diag(mask * noise + (1.0 - mask))


def neg_log_likelihood(theta, x, y, mask, kind="matern52"):
  """Negative log marginal likelihood (per real row) of standardized targets y [n], plus a
  weak log-normal prior that keeps lengthscales and noise in a sensible range."""
  chol = jnp.linalg.cholesky(_masked_gram(theta, x, mask, kind))
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  nll = 0.5 * jnp.dot(y * mask, alpha) + jnp.sum(jnp.log(jnp.diag(chol)))
  prior = (jnp.sum((theta["log_lengthscale"] - jnp.log(0.5)) ** 2) / 8.0
           + (theta["log_noise"] - jnp.log(0.05)) ** 2 / 8.0 + theta["log_signal"] ** 2 / 8.0)
  return nll / jnp.maximum(mask.sum(), 1.0) + prior / jnp.maximum(mask.sum(), 1.0)


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _fit(theta, x, y, mask, kind, steps):
  opt = optax.adam(0.05)

  def step(carry, _):
    theta, state = carry
    grads = jax.grad(neg_log_likelihood)(theta, x, y, mask, kind)
    updates, state = opt.update(grads, state)
    return (optax.apply_updates(theta, updates), state), None

  (theta, _), _ = jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)
  return theta


@functools.partial(jax.jit, static_argnames=("kind",))
def _posterior(theta, x, y, mask, xq, kind):
  chol = jnp.linalg.cholesky(_masked_gram(theta, x, mask, kind))
  kq = kernel(xq, x, theta["log_lengthscale"], theta["log_signal"], kind) * mask[None, :]
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  v = jax.scipy.linalg.solve_triangular(chol, kq.T, lower=True)
  var = jnp.exp(theta["log_signal"]) - jnp.sum(v * v, axis=0)
  return kq @ alpha, jnp.maximum(var, 1e-12)


def _pad(n: int) -> int:
  return max(_MIN_ROWS, 1 << (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class GP:
  """A fitted GP on standardized targets (y - offset) / scale."""

  theta: dict
  x: jax.Array
  y: jax.Array
  mask: jax.Array
  offset: float
  scale: float
  kind: str

  def predict(self, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation, float64[q] each, in the targets' units."""
    xq = np.asarray(xq, np.float64)
    q = xq.shape[0]
    pad = np.zeros((_pad(q), xq.shape[1]))
    pad[:q] = xq
    mean, var = _posterior(self.theta, self.x, self.y, self.mask, jnp.asarray(pad), self.kind)
    mean = np.asarray(mean, np.float64)[:q] * self.scale + self.offset
    return mean, np.sqrt(np.asarray(var, np.float64)[:q]) * self.scale


def init_theta(num_features: int, lengthscale: float = 0.5, noise: float = 0.05) -> dict:
  return {"log_lengthscale": jnp.full((num_features,), np.log(lengthscale)),
          "log_signal": jnp.zeros(()), "log_noise": jnp.asarray(np.log(noise))}


def fit(x: np.ndarray, y: np.ndarray, kind: str = "matern52", steps: int = 100,
        theta: dict | None = None, offset: float | None = None, scale: float | None = None
        ) -> GP:
  """Fits a GP to x [n, P] -> y [n].

  Args:
    x, y: the data (features on roughly unit ranges).
    kind: "matern52" or "rbf".
    steps: Adam steps on the hyperparameters (0 keeps `theta` as given).
    theta: initial hyperparameters (default: init_theta).
    offset, scale: standardization of y (default: its mean and standard deviation).
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n, p = x.shape
  offset = float(np.mean(y)) if offset is None else offset
  scale = float(np.std(y)) if scale is None else scale
  scale = scale if scale > 0 else 1.0
  size = _pad(n)
  xp, yp, mask = np.zeros((size, p)), np.zeros(size), np.zeros(size)
  xp[:n], yp[:n], mask[:n] = x, (y - offset) / scale, 1.0
  xp, yp, mask = jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask)
  theta = init_theta(p) if theta is None else theta
  if steps:
    theta = _fit(theta, xp, yp, mask, kind, steps)
  return GP(theta, xp, yp, mask, offset, scale, kind)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
  """float64[q] expected improvement below `best` (minimization)."""
  z = (best - mean) / np.maximum(std, 1e-12)
  return (best - mean) * norm.cdf(z) + std * norm.pdf(z)
