"""Describes LLMConfig-Gym's tasks (or your own CSV task) and, with --experiments, the splits.

  python launch/gym_info.py                      # every built-in task, as text
  python launch/gym_info.py --json               # one JSON object {"tasks": {...}}
  python launch/gym_info.py --csv=runs.csv --params=lr:log,bs:log --fidelities=N,D \
      --metric=smooth_loss:min                   # your own sweep
  python launch/gym_info.py --experiments        # the train/test experiments
"""

import json
import sys

from absl import app
from absl import flags

from autollm_jax import experiments
from autollm_jax.gym import data
from autollm_jax.gym import flags as gym_flags
from autollm_jax.gym import landscape

JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
EXPERIMENTS = flags.DEFINE_bool("experiments", False, "Print the curated train/test split.")
SEED = flags.DEFINE_integer("seed", 0, "Curation seed (with --experiments).")
_SHOWN_PARAMS = 5


def _text(name: str, s: dict) -> str:
  lines = [f"== {name}: {s['rows']} rows, {len(s['fidelities'])} fidelities, metric "
           f"{s['metric']} ({s['direction']}), range [{s['metric_range'][0]:.4g}, "
           f"{s['metric_range'][1]:.4g}]",
           "   params: " + ", ".join(f"{k} ({v})" for k, v in s["params"].items())]
  for fid in s["fidelities"]:
    best = s["best"][fid]
    items = list(best["config"].items())
    config = " ".join(f"{k}={v:.4g}" for k, v in items[:_SHOWN_PARAMS])
    if len(items) > _SHOWN_PARAMS:
      config += f" (+{len(items) - _SHOWN_PARAMS} more)"
    lines.append(f"   {fid}: {s['configs_per_fidelity'][fid]} configs; best "
                 f"{s['metric']}={best[s['metric']]:.4g} at {config}")
  for c in s["neighbour_rank_correlation"]:
    rho = "n/a" if c["spearman"] is None else f"{c['spearman']:+.3f}"
    lines.append(f"   rank corr {c['from']} -> {c['to']}: {rho} on {c['shared']} shared "
                 f"configs (matched by {c['matched_by']})")
  return "\n".join(lines)


def main(argv):
  del argv
  try:
    tables = gym_flags.tables()
  except data.GymDataError as e:
    sys.exit(f"error: {e}")
  if EXPERIMENTS.value:
    exps = experiments.curate(tables, seed=SEED.value,
                              target_fidelity=gym_flags.TARGET_FIDELITY.value)
    print(experiments.describe(exps))
    return
  summaries = {t.name: landscape.summary(t) for t in tables}
  if JSON.value:
    print(json.dumps({"tasks": summaries}, indent=1))
  else:
    print("\n\n".join(_text(n, s) for n, s in summaries.items()))


if __name__ == "__main__":
  app.run(main)
