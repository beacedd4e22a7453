"""The whole pipeline (SFT, GRPO, the RL-only ablation, evaluation) on Gemma-3-270M.

  python launch/train.py --config=configs/mtrl_gemma3_270m.py --workdir=DIR

configs/mtrl.py with configs/sft_gemma3_270m.py's backbone and SFT settings: SFT and RL alone
both start from the pretrained weights. One accelerator. Memory (memory.estimate): SFT as in
configs/sft_gemma3_270m.py (under 32 GiB); GRPO scores each iteration's 8 rollouts (up to
~3800 tokens each) in one forward pass, 30 GiB of float32 logits over the 262k vocabulary
(which is what keeps the batch this small), and trains on 2 rollouts at a time (20 GiB of
activations): under 64 GiB, e.g. one 80 GB H100 or A100.
"""

import ml_collections

from autollm_jax import config_files



def get_config() -> ml_collections.ConfigDict:
  backbone = config_files.sibling(__file__, "sft_gemma3_270m.py")
  c = backbone.apply(config_files.sibling(__file__, "mtrl.py").get_config())
  c.rl.experiments_per_batch = 2
  c.rl.group_size = 4
  c.rl.minibatches = 2
  c.rl.grad_accum_steps = 2
  c.rl.iterations = 400
  c.rl.learning_rate = 1e-6
  c.rl.warmup_steps = 10
  c.rl.checkpoint_every = 20
  return c
