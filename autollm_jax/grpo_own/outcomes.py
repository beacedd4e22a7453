"""The grpo_own table on disk (gym/grpo_own/outcomes.csv) and what its seeds say about noise.

One CSV row is one GRPO run: a configuration, a seed and a fidelity (the policy's size). The
gym averages a configuration's seeds (`gym/tasks/grpo_own.json`); `seed_summary` reports
their spread.
"""

from __future__ import annotations

import csv
import os
import pathlib

import numpy as np

from autollm_jax.grpo_own import sweep

COLUMNS = ("policy", "policy_params", *sweep.PARAM_NAMES, "seed", *sweep.METRICS,
           "sft_accuracy", "final_reward")


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
  """Writes `rows` (from `sweep.run_fidelity`, with "policy" added) as the table's CSV."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS, extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict]:
  """The rows of a table CSV, numbers as floats (the policy label stays a string)."""
  with open(path, newline="") as f:
    return [{k: v if k == "policy" else float(v) for k, v in row.items()}
            for row in csv.DictReader(f)]


def by_config(rows: list[dict], metric: str = "heldout_accuracy"
              ) -> dict[tuple, np.ndarray]:
  """{(policy, *hyperparameters): float64[seeds] the metric of each seed, in seed order}."""
  out: dict[tuple, list[tuple[float, float]]] = {}
  for r in rows:
    key = (r["policy"], *(r[k] for k in sweep.PARAM_NAMES))
    out.setdefault(key, []).append((r["seed"], r[metric]))
  return {k: np.array([v for _, v in sorted(seeds)]) for k, seeds in out.items()}


def seed_summary(rows: list[dict]) -> dict[str, dict]:
  """Per policy: how the configurations' held-out accuracy spreads and how noisy a seed is.

  Returns:
    {policy: {"configs", "seeds", "sft", "seed_std" (median over configurations of the
    standard deviation across seeds), "mean" {min, median, max} of configuration means,
    "improved" / "collapsed" (configurations whose mean is above the warm start by more than
    two standard errors / below half of it)}}.
  """
  out = {}
  for policy in dict.fromkeys(r["policy"] for r in rows):
    values = np.stack([v for k, v in by_config(rows).items() if k[0] == policy])
    sft = next(r for r in rows if r["policy"] == policy)["sft_accuracy"]
    std = values.std(axis=1, ddof=1)
    mean = values.mean(axis=1)
    margin = 2 * np.median(std) / np.sqrt(values.shape[1])
    out[policy] = {
        "configs": values.shape[0], "seeds": values.shape[1], "sft": sft,
        "seed_std": round(float(np.median(std)), 4),
        "mean": {q: round(float(f(mean)), 4)
                 for q, f in (("min", np.min), ("median", np.median), ("max", np.max))},
        "improved": int(np.sum(mean > sft + margin)),
        "collapsed": int(np.sum(mean < sft / 2)),
    }
  return out
