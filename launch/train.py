"""Trains a configuration agent: simulation, distillation, multi-turn GRPO, evaluation.

  python launch/train.py --config=configs/mtrl.py --workdir=/tmp/mtrl
  python launch/train.py --config=configs/sft.py --workdir=/tmp/sft --config.sft.total_steps=100

Every stage resumes from its last checkpoint when the same command is run again. On several
hosts, start one process per host with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID set (by hand or by the cluster's launcher): they train together.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from autollm_jax import pipeline
from autollm_jax import sharding

CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/*.py file.",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", "/tmp/autollm_jax", "Where checkpoints, metrics, "
                              "trajectories and reports go.")


def main(argv):
  del argv
  try:
    pipeline.check_config(CONFIG.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  sharding.initialize_distributed()
  logging.info("config:\n%s", CONFIG.value)
  pipeline.train_and_evaluate(CONFIG.value, WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
