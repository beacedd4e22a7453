"""The pipeline for Qwen3-1.7B (from safetensors) on a data x tensor mesh of 8 accelerators.

  python launch/train.py --config=configs/mtrl_qwen3_1_7b.py --workdir=DIR \
      --config.model.checkpoint=/path/to/Qwen3-1.7B

The checkpoint is a Hugging Face model directory (config.json, tokenizer.json,
model*.safetensors, as `huggingface-cli download Qwen/Qwen3-1.7B` writes it): its shapes, its
weights and its byte-level BPE, the protocol markers on reserved vision tokens
(`safetensors_import.load_pretrained_dir`, `protocol_tokenizer.RESERVED_TOKENS`); another
Qwen3 size loads the same way. Without it the 1.7B architecture trains from scratch on a
SentencePiece vocabulary. bf16 compute with fp32 master weights, rematerialized blocks, FSDP
over 4 devices x tensor parallelism over 2. Memory per device (8 x 80 GB): parameters and
AdamW state about 8 GB sharded 8 ways, activations with remat about 6 GB at 8 x 4096 tokens;
launch/train.py logs the estimate before it allocates, then XLA's figure for the compiled SFT
step.
"""

import ml_collections

from autollm_jax import config_files



def get_config() -> ml_collections.ConfigDict:
  c = config_files.sibling(__file__, "mtrl.py").get_config()
  c.data.tasks = ("pretrain_steplaw", "arch_hwgpt", "mixture_admire")
  c.data.max_train_experiments = 0
  c.data.max_prompt_rows = 8
  c.data.max_context_fidelities = 0
  c.simulation.reasoning = "full"
  c.model.name = "qwen3_1.7b"
  c.model.checkpoint = ""  # a Hugging Face checkpoint directory of Qwen3-1.7B
  c.model.dtype = "bfloat16"
  c.model.remat = True
  c.model.scan_layers = True
  c.model.max_seq_len = 8192
  c.mesh.fsdp = 4
  c.mesh.tensor = 2
  c.policy.think_tokens = 384
  c.policy.turn_tokens = 512
  c.sft.batch_size = 32
  c.sft.grad_accum_steps = 4
  c.sft.total_steps = 2000
  c.sft.learning_rate = 1e-5
  c.rl.experiments_per_batch = 16
  c.rl.group_size = 8
  c.rl.minibatches = 4
  c.rl.grad_accum_steps = 2
  c.rl.iterations = 200
  c.rl.learning_rate = 1e-6
  c.eval.agents = ("random", "topk", "teacher", "gp", "fsbo")
  c.eval.seeds = 5
  return c
