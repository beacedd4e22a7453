"""Benchmarks configuration agents on LLMConfig-Gym (or your own CSV task).

  python launch/evaluate.py --agents=random,topk,teacher,gp,fsbo --split=test --budget=5 \
      --seeds=5 --out=/tmp/eval
  python launch/evaluate.py --csv=runs.csv --params=lr:log,bs:log --fidelities=N,D \
      --metric=smooth_loss:min --agents=random,teacher --out=/tmp/eval_mine

Writes OUT/report.json, OUT/report.md and OUT/regret_vs_budget.png. Agents that learn from
the training experiments (fsbo) are fitted on the train split first. A trained policy
(`--agents=policy --checkpoint=DIR`) is played on the tasks it was trained on unless --tasks
says otherwise.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from autollm_jax import agents
from autollm_jax import evaluation
from autollm_jax import experiments
from autollm_jax import report
from autollm_jax.gym import data
from autollm_jax.gym import flags as gym_flags

AGENTS = flags.DEFINE_list("agents", ["random", "topk", "teacher", "gp", "fsbo"],
                           f"Agents to evaluate, from: {', '.join(agents.names())}.")
SPLIT = flags.DEFINE_enum("split", "test", ["train", "test"], "Which experiments to run.")
BUDGET = flags.DEFINE_integer("budget", experiments.MAX_BUDGET, "Trials per experiment.")
SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per experiment (0..seeds-1).")
CURATION_SEED = flags.DEFINE_integer("curation_seed", 0, "Seed of the train/test curation.")
OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint of agents that load one.")


def main(argv):
  del argv
  if not 1 <= BUDGET.value <= experiments.MAX_BUDGET:
    sys.exit(f"error: --budget={BUDGET.value} must be within 1..{experiments.MAX_BUDGET}")
  try:
    chosen = {name: agents.make(name, CHECKPOINT.value) for name in AGENTS.value}
    # A trained policy writes actions for the tasks it learned (its vocabulary and turn length
    # fit them): without --tasks, those are the tasks played.
    trained = [t for agent in chosen.values()
               for t in getattr(getattr(agent, "settings", None), "tasks", ())]
    tables = {t.name: t for t in gym_flags.tables(default_tasks=list(dict.fromkeys(trained)))}
    exps = experiments.curate(list(tables.values()), seed=CURATION_SEED.value,
                              target_fidelity=gym_flags.TARGET_FIDELITY.value)
  except (data.GymDataError, KeyError, ValueError, ImportError) as e:
    sys.exit(f"error: {e}")
  train = [e for e in exps if e.split == "train"]
  for name, agent in chosen.items():
    logging.info("fitting %s on %d training experiments", name, len(train))
    agent.fit(train, tables)
  split = [e for e in exps if e.split == SPLIT.value]
  logging.info("%d %s experiments x %d seeds, budget %d", len(split), SPLIT.value, SEEDS.value,
               BUDGET.value)
  try:
    result = evaluation.evaluate(chosen, split, tables, list(range(SEEDS.value)), BUDGET.value)
  except ValueError as e:  # e.g. a policy whose turns are too short for a task's actions
    sys.exit(f"error: {e}")
  paths = report.write(result, OUT.value)
  print(paths["md"].read_text())
  print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
  app.run(main)
