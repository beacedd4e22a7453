"""Regenerates grpo_own, the gym's table of GRPO-tuning outcomes, with the project's own GRPO.

  python launch/grpo_sweep.py                       # the whole table, into gym/grpo_own/
  python launch/grpo_sweep.py --policies=xs --out_dir=/tmp/grpo_own   # one fidelity

For each policy size (the fidelity): a supervised warm start on three-digit arithmetic, then
every configuration of GRPO hyperparameters with every seed (autollm_jax/grpo_own/sweep.py).
Writes outcomes.csv (one row per run) and provenance.json (the command, commit, machine,
settings, seeds, warm starts, wall times and seed noise). The CSV is rewritten after each
fidelity, so an interrupted run keeps what it finished.
"""

import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import flax
import jax
from absl import app
from absl import flags

from autollm_jax.grpo_own import outcomes
from autollm_jax.grpo_own import policies
from autollm_jax.grpo_own import sweep
from autollm_jax.gym import data

POLICIES = flags.DEFINE_list("policies", list(policies.POLICIES), "Policy sizes (fidelities).")
OUT_DIR = flags.DEFINE_string("out_dir", str(data.GYM_DIR / "grpo_own"),
                              "Where outcomes.csv and provenance.json are written.")
NUM_CONFIGS = flags.DEFINE_integer("num_configs", sweep.Settings.num_configs,
                                   "Configurations per fidelity.")
SEEDS = flags.DEFINE_list("seeds", [str(s) for s in sweep.Settings.seeds],
                          "Seeds each configuration is run with.")


def _git(*args: str) -> str:
  return subprocess.run(["git", *args], cwd=data.PROJECT_ROOT, capture_output=True, text=True,
                        check=False).stdout.strip()


def _machine() -> dict:
  return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
          "cpu_count": os.cpu_count(), "device": str(jax.devices()[0].device_kind),
          "python": platform.python_version(), "jax": jax.__version__,
          "flax": flax.__version__}


def main(argv):
  del argv
  unknown = [p for p in POLICIES.value if p not in policies.POLICIES]
  if unknown:
    sys.exit(f"error: --policies has unknown size(s) {unknown}; sizes: "
             f"{', '.join(policies.POLICIES)}")
  settings = sweep.Settings(num_configs=NUM_CONFIGS.value,
                            seeds=tuple(int(s) for s in SEEDS.value))
  out_dir = pathlib.Path(OUT_DIR.value)
  start = time.perf_counter()
  rows, fidelities = [], []
  for policy in POLICIES.value:
    policy_rows, info = sweep.run_fidelity(policy, settings)
    rows += [{"policy": policy, **r} for r in policy_rows]
    fidelities.append(info)
    outcomes.write_csv(out_dir / "outcomes.csv", rows)
    print(json.dumps(info), flush=True)
  provenance = {
      "command": " ".join(["python", "launch/grpo_sweep.py", *sys.argv[1:]]),
      "commit": _git("rev-parse", "HEAD"),
      "worktree_dirty": bool(_git("status", "--porcelain")),
      "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "machine": _machine(),
      "wall_s": round(time.perf_counter() - start, 1),
      "settings": dataclasses.asdict(settings),
      "policies": {p: dataclasses.asdict(policies.POLICIES[p]) for p in POLICIES.value},
      "fidelities": fidelities,
      "seed_summary": outcomes.seed_summary(rows),
  }
  (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
  print(json.dumps(provenance["seed_summary"], indent=1))


if __name__ == "__main__":
  app.run(main)
