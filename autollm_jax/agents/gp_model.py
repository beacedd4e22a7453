"""Exact Gaussian-process regression: Matern-5/2 or RBF kernel with ARD lengthscales.

The GPs of the agents are small (a few hundred rows at most) and their sizes differ per
experiment, so they run in NumPy/LAPACK: no compilation per array shape, about a millisecond
per likelihood evaluation. Hyperparameters maximize the marginal likelihood under a weak
log-normal prior, by L-BFGS with analytic gradients. `kernel` and `hyperprior` also take
jax.numpy (xp=jnp), for the deep-kernel GP of FSBO that is trained by autodiff.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
from typing import Any, Callable, Iterator

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.special

JITTER = 1e-6
# The hyperprior: independent normals in log scale, centred at these, with this variance.
PRIOR_LENGTHSCALE = 0.5
PRIOR_NOISE = 0.05
PRIOR_VARIANCE = 4.0
BOUND = 10.0
FTOL = 1e-6  # relative change of the per-row objective at which L-BFGS stops
CLIP_QUANTILE = 0.75  # cheap outcomes worse than this are flattened (diverged runs)


def _openblas_thread_setters() -> tuple[Callable[[int], int], ...]:
  """openblas_set_num_threads_local of each OpenBLAS loaded in this process (NumPy's and
  SciPy's wheels bring one each); none where there is none or no /proc (then nothing is set)."""
  try:
    with open("/proc/self/maps") as f:
      paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
  except OSError:
    return ()
  setters = []
  for path in paths:
    try:
      setters.append(ctypes.CDLL(path).openblas_set_num_threads_local)
    except (OSError, AttributeError):
      continue
  return tuple(setters)


_THREAD_SETTERS = _openblas_thread_setters()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
  """Runs BLAS/LAPACK on the calling thread only: for matrices this small, OpenBLAS's worker
  threads cost more than they give, 100x more on a busy CPU (a 256-row Cholesky, 2 cores).
  Also holds for JAX on CPU, whose LAPACK calls run SciPy's OpenBLAS on the calling thread."""
  previous = [set_threads(1) for set_threads in _THREAD_SETTERS]
  try:
    yield
  finally:
    for set_threads, n in zip(_THREAD_SETTERS, previous):
      set_threads(n)


def _profile(r2: Any, kind: str, xp: Any = np) -> tuple[Any, Any]:
  """The unit-signal kernel as a function of squared scaled distance r2, and its derivative."""
  if kind == "rbf":
    k = xp.exp(-0.5 * r2)
    return k, -0.5 * k
  r = xp.sqrt(5.0 * r2 + 1e-12)
  e = xp.exp(-r)
  return (1.0 + r + r * r / 3.0) * e, -(5.0 / 6.0) * (1.0 + r) * e


def _sq_dists(a1: Any, a2: Any, xp: Any = np) -> Any:
  """float[n1, n2] squared distances of the rows of a1 [n1, P] and a2 [n2, P]."""
  r2 = (a1 * a1).sum(-1)[:, None] + (a2 * a2).sum(-1)[None, :] - 2.0 * a1 @ a2.T
  return xp.maximum(r2, 0.0)


def kernel(x1: Any, x2: Any, log_lengthscale: Any, log_signal: Any, kind: str = "matern52",
           xp: Any = np) -> Any:
  """float[n1, n2] covariances of x1 [n1, P] and x2 [n2, P] (xp: numpy or jax.numpy)."""
  inv = xp.exp(-log_lengthscale)
  return xp.exp(log_signal) * _profile(_sq_dists(x1 * inv, x2 * inv, xp), kind, xp)[0]


def hyperprior(theta: dict, xp: Any = np) -> Any:
  """Negative log density (up to a constant) of the weak log-normal prior that keeps the
  lengthscales near PRIOR_LENGTHSCALE, the noise near PRIOR_NOISE and the signal near 1."""
  return (xp.sum((theta["log_lengthscale"] - np.log(PRIOR_LENGTHSCALE)) ** 2)
          + (theta["log_noise"] - np.log(PRIOR_NOISE)) ** 2
          + theta["log_signal"] ** 2) / (2.0 * PRIOR_VARIANCE)


def init_theta(num_features: int, lengthscale: float = PRIOR_LENGTHSCALE,
               noise: float = PRIOR_NOISE) -> dict:
  """Initial hyperparameters: log_lengthscale float64[P], log_signal and log_noise floats."""
  return {"log_lengthscale": np.full(num_features, np.log(lengthscale)),
          "log_signal": 0.0, "log_noise": float(np.log(noise))}


def _objective(v: np.ndarray, x: np.ndarray, y: np.ndarray, kind: str
               ) -> tuple[float, np.ndarray]:
  """Negative log marginal likelihood plus hyperprior, per row, of y [n] at x [n, P], and its
  gradient in v = (log_lengthscale [P], log_signal, log_noise)."""
  n, p = x.shape
  log_ls, log_signal, log_noise = v[:p], v[p], v[p + 1]
  a = x * np.exp(-log_ls)
  k, dk = _profile(_sq_dists(a, a), kind)
  signal, noise = np.exp(log_signal), np.exp(log_noise)
  gram = signal * k
  gram.flat[::n + 1] += noise + JITTER
  chol = scipy.linalg.cholesky(gram, lower=True, overwrite_a=True, check_finite=False)
  alpha = scipy.linalg.cho_solve((chol, True), y, check_finite=False)
  nll = 0.5 * y @ alpha + np.log(np.diag(chol)).sum()
  w, _ = scipy.linalg.lapack.dpotri(chol, lower=1, overwrite_c=1)  # lower triangle of gram^-1
  w += w.T
  w.flat[::n + 1] *= 0.5
  w -= np.outer(alpha, alpha)
  # d gram / d log_lengthscale_j = signal * dk * (-2 (a_j - a_j')^2); with g = w * dk
  # symmetric, sum g (a_j - a_j')^2 = 2 sum_i a_ij^2 g_i. - 2 sum_i a_ij (g a)_ij.
  g = w * dk
  grad_ls = -2.0 * signal * ((a * a).T @ g.sum(1) - (a * (g @ a)).sum(0))
  grad = np.concatenate([grad_ls, [0.5 * signal * np.vdot(w, k), 0.5 * noise * np.trace(w)]])
  theta = {"log_lengthscale": log_ls, "log_signal": log_signal, "log_noise": log_noise}
  centre = np.concatenate([np.full(p, np.log(PRIOR_LENGTHSCALE)), [0.0, np.log(PRIOR_NOISE)]])
  return (nll + hyperprior(theta)) / n, (grad + (v - centre) / PRIOR_VARIANCE) / n


def _optimize(v: np.ndarray, x: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
  """The hyperparameters v = (log_lengthscale [P], log_signal, log_noise) that minimize
  _objective, by L-BFGS-B from v (each within BOUND of 0)."""
  result = scipy.optimize.minimize(_objective, v, args=(x, y, kind), jac=True,
                                   method="L-BFGS-B", bounds=[(-BOUND, BOUND)] * len(v),
                                   options={"ftol": FTOL})
  return result.x


@dataclasses.dataclass(frozen=True)
class GP:
  """A fitted GP on standardized targets (y - offset) / scale.

  Attributes:
    theta: the hyperparameters (see init_theta).
    x: float64[n, P] the inputs.
    chol: float64[n, n] the Cholesky factor of the inputs' covariance (noise included).
    alpha: float64[n] the covariance's inverse times the standardized targets.
    offset, scale: the standardization.
    kind: "matern52" or "rbf".
  """

  theta: dict
  x: np.ndarray
  chol: np.ndarray
  alpha: np.ndarray
  offset: float
  scale: float
  kind: str

  def predict(self, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation at xq [q, P], float64[q] each, in y's units."""
    theta = self.theta
    with single_threaded_blas():
      kq = kernel(np.asarray(xq, np.float64), self.x, theta["log_lengthscale"],
                  theta["log_signal"], self.kind)
      v = scipy.linalg.solve_triangular(self.chol, kq.T, lower=True, check_finite=False)
    var = np.maximum(np.exp(theta["log_signal"]) - np.sum(v * v, axis=0), 1e-12)
    return kq @ self.alpha * self.scale + self.offset, np.sqrt(var) * self.scale


def fit(x: np.ndarray, y: np.ndarray, kind: str = "matern52", optimize: bool = True,
        theta: dict | None = None, offset: float | None = None, scale: float | None = None
        ) -> GP:
  """Fits a GP to x [n, P] -> y [n].

  Args:
    x, y: the data (features on roughly unit ranges).
    kind: "matern52" or "rbf".
    optimize: whether to fit the hyperparameters (else `theta` is kept as given).
    theta: the initial hyperparameters (default: init_theta).
    offset, scale: standardization of y (default: its mean and standard deviation).
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n, p = x.shape
  offset = float(np.mean(y)) if offset is None else offset
  scale = float(np.std(y)) if scale is None else scale
  scale = scale if scale > 0 else 1.0
  z = (y - offset) / scale
  theta = init_theta(p) if theta is None else theta
  v = np.concatenate([np.asarray(theta["log_lengthscale"], np.float64).reshape(p),
                      [float(theta["log_signal"]), float(theta["log_noise"])]])
  with single_threaded_blas():
    if optimize:
      v = _optimize(v, x, z, kind)
    theta = {"log_lengthscale": v[:p], "log_signal": v[p], "log_noise": v[p + 1]}
    gram = kernel(x, x, theta["log_lengthscale"], theta["log_signal"], kind)
    gram.flat[::n + 1] += np.exp(theta["log_noise"]) + JITTER
    chol = scipy.linalg.cholesky(gram, lower=True, overwrite_a=True, check_finite=False)
    alpha = scipy.linalg.cho_solve((chol, True), z, check_finite=False)
  return GP(theta, x, chol, alpha, offset, scale, kind)


def refine(prior_mean: np.ndarray, feats: np.ndarray, tried: np.ndarray, y: np.ndarray,
           theta: dict, scale: float, kind: str = "matern52"
           ) -> tuple[np.ndarray, np.ndarray]:
  """The prior corrected by the trials: prior mean plus the trials' mean gap plus a GP (with
  fixed hyperparameters) on the remaining gaps.

  Args:
    prior_mean: float64[n] the prior mean at every candidate.
    feats: float64[n, P] the candidates' features.
    tried: int[t] the candidates tried; y: float64[t] their outcomes (lower is better).
    theta, scale, kind: the residual GP's hyperparameters, target scale and kernel.

  Returns:
    float64[n] posterior mean and float64[n] standard deviation at every candidate.
  """
  residual = y - prior_mean[tried]
  offset = float(residual.mean())
  gp = fit(feats[tried], residual - offset, kind=kind, optimize=False, theta=theta,
           offset=0.0, scale=scale)
  mean, std = gp.predict(feats)
  return prior_mean + offset + mean, std


def clip_outcomes(y: np.ndarray) -> np.ndarray:
  """float[n] outcomes (smaller is better) with those worse than their CLIP_QUANTILE
  flattened to it, so that diverged runs do not dominate a fit."""
  return np.minimum(y, np.quantile(y, CLIP_QUANTILE))


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
  """float64[q] expected improvement below `best` (minimization)."""
  z = (best - mean) / np.maximum(std, 1e-12)
  return (best - mean) * scipy.special.ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
