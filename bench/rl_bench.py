"""A few GRPO iterations of a pipeline config: iteration time, rollout and training speed.

Runs the config's simulate, sft and rl stages (the pipeline of launch/train.py) in --workdir
with --sft_steps distillation steps and --iterations GRPO iterations, then summarizes the RL
stage's metrics.jsonl. The first iteration compiles the rollout and the train step, so the
medians are over the iterations after it. An iteration is a rollout batch (rollouts, then
scoring under the policy and the KL reference: `rollout_seconds`) followed by its optimizer
steps (the rest of `seconds`). The last line reads
`rl iteration: <model> seconds=<median> rollout_s=<median> train_s=<median> ...`.

  python bench/rl_bench.py --config=configs/mtrl_gemma3_270m.py --config.model.checkpoint= \
      --workdir=/tmp/rl_bench --sft_steps=4 --iterations=4
(--config.model.checkpoint= starts the config's architecture from random weights, with a
SentencePiece vocabulary trained on the teacher's episodes, where its GGUF weights are absent.)
"""

import pathlib
import statistics

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from autollm_jax import pipeline
from autollm_jax.training import metrics as metrics_lib

CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/*.py pipeline config.")
WORKDIR = flags.DEFINE_string("workdir", "/tmp/rl_bench", "Pipeline workdir (use a fresh one: "
                              "a finished stage is resumed, not rerun).")
SFT_STEPS = flags.DEFINE_integer("sft_steps", 4, "Distillation steps before GRPO.")
ITERATIONS = flags.DEFINE_integer("iterations", 4, "GRPO iterations (the first compiles).")


def main(argv):
  del argv
  config = CONFIG.value
  config.stages = "simulate,sft,rl"
  config.sft.total_steps = SFT_STEPS.value
  config.sft.checkpoint_every = SFT_STEPS.value
  config.rl.iterations = ITERATIONS.value
  config.rl.checkpoint_every = ITERATIONS.value
  pipeline.train_and_evaluate(config, WORKDIR.value)
  records = metrics_lib.read_metrics(pathlib.Path(WORKDIR.value) / "rl", "rl")
  timed = records[1:] or records
  median = lambda f: statistics.median(f(r) for r in timed)
  rows = config.rl.experiments_per_batch * config.rl.group_size
  device = jax.devices()[0]
  memory = (device.memory_stats() or {}).get("peak_bytes_in_use")
  print(f"model={config.model.name} checkpoint={config.model.checkpoint or 'random init'} "
        f"dtype={config.model.dtype}/{config.model.param_dtype} rows={rows} "
        f"devices={jax.device_count()}x{device.device_kind} jax={jax.__version__}"
        + (f" peak_memory={memory / 2**30:.1f}GiB" if memory else ""))
  print(f"rl iteration: {config.model.name} seconds={median(lambda r: r['seconds']):.2f} "
        f"rollout_s={median(lambda r: r['rollout_seconds']):.2f} "
        f"train_s={median(lambda r: r['seconds'] - r['rollout_seconds']):.2f} "
        f"rollout_tokens/s={median(lambda r: r['rollout_tokens_per_s']):.0f} "
        f"agent_tokens={median(lambda r: r['agent_tokens']):.0f} "
        f"first_s={records[0]['seconds']:.1f} (median of {len(timed)} iterations)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
