"""The whole pipeline (SFT, GRPO, the RL-only ablation, evaluation) on SmolLM2-135M-Instruct.

  python launch/train.py --config=configs/mtrl_smollm2_135m.py --workdir=DIR

configs/mtrl.py with configs/sft_smollm2_135m.py's backbone and SFT settings: SFT and RL alone
both start from the pretrained weights. One accelerator. Memory (memory.estimate): SFT as in
configs/sft_smollm2_135m.py (under 16 GiB); GRPO scores each iteration's 32 rollouts (up to
~3800 tokens each) in one forward pass, 22 GiB of float32 logits over the 49k vocabulary and
up to 17 GiB of one layer's attention probabilities, and trains on 4 rollouts at a time
(9 GiB of activations with remat): under 56 GiB, e.g. one 80 GB H100 or A100.
"""

import ml_collections

from autollm_jax import config_files



def get_config() -> ml_collections.ConfigDict:
  backbone = config_files.sibling(__file__, "sft_smollm2_135m.py")
  c = backbone.apply(config_files.sibling(__file__, "mtrl.py").get_config())
  c.rl.experiments_per_batch = 8
  c.rl.group_size = 4
  c.rl.minibatches = 4
  c.rl.grad_accum_steps = 2
  c.rl.iterations = 200
  c.rl.learning_rate = 1e-6
  c.rl.warmup_steps = 10
  c.rl.checkpoint_every = 20
  return c
