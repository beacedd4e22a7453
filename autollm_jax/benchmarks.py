"""Timings of the two hot loops, for bench/train_bench.py and bench/sampler_bench.py.

`time_grpo_step` times the GRPO optimizer step that training runs (`grpo.grpo_loss_fn` in
`train_step.jit_train_step`) on random token batches; `time_decode` times the sampler's
jitted decode loop after a prefill. Both warm up (compile) first and return medians.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from autollm_jax import roofline
from autollm_jax import sampler as sampler_lib
from autollm_jax import sharding as sharding_lib
from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.training import grpo
from autollm_jax.training import optimizer as optimizer_lib
from autollm_jax.training import train_step


@dataclasses.dataclass(frozen=True)
class TrainStepTiming:
  """seconds: median time of one optimizer step; tokens: tokens per step (batch x seq_len);
  model_flops: matrix FLOPs per step (roofline.train_flops_per_token, causal)."""
  seconds: float
  tokens: int
  model_flops: float


@dataclasses.dataclass(frozen=True)
class DecodeTiming:
  """step_seconds: median time of one decode step (one token for every row);
  prefill_seconds: median time of the prefill; read_bytes: roofline.decode_bytes_per_step."""
  step_seconds: float
  prefill_seconds: float
  read_bytes: int


def grpo_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0
               ) -> dict[str, np.ndarray]:
  """A random scored-rollout batch shaped like GRPO's: tokens, masks (agent tokens in the
  second half), old and reference log-probs, one advantage per row."""
  rng = np.random.default_rng(seed)
  shape = (batch_size, seq_len)
  logp = -rng.exponential(1.0, shape).astype(np.float32)
  return {"tokens": rng.integers(0, vocab_size, shape, dtype=np.int32),
          "input_mask": np.ones(shape, bool),
          "loss_mask": (np.arange(seq_len) >= seq_len // 2).astype(np.float32)[None].repeat(
              batch_size, 0),
          "old_logp": logp, "ref_logp": logp + rng.normal(0, 0.1, shape).astype(np.float32),
          "advantages": rng.standard_normal(batch_size).astype(np.float32)}


def time_grpo_step(config: ModelConfig, batch_size: int, seq_len: int, grad_accum: int,
                   mesh: Mesh, steps: int = 5, seed: int = 0) -> TrainStepTiming:
  """Median time of the GRPO train step on `config` (its dtype, param_dtype and remat).

  Args:
    config: the model (random weights, initialised in their shards on `mesh`).
    batch_size: rows per optimizer step, B.
    seq_len: tokens per row, T.
    grad_accum: microbatches per step (B % grad_accum == 0).
    mesh: the device mesh; rows are split over "fsdp".
    steps: timed steps (after one compiling step).
    seed: weights and batch.
  """
  rl = optimizer_lib.default_optimizer_config(clip_eps=0.2, kl_coef=0.04,
                                              loss_aggregation="token-mean")
  optimizer = optimizer_lib.make_optimizer(rl)
  graphdef, params = sharding_lib.init_sharded(config, mesh, seed)
  state = jax.jit(train_step.init_state, static_argnums=1)(params, optimizer)
  step = train_step.jit_train_step(grpo.grpo_loss_fn(graphdef, rl), optimizer, state, mesh)
  batch = train_step.to_global(
      train_step.split_microbatches(grpo_batch(config.vocab_size, batch_size, seq_len, seed),
                                    grad_accum), train_step.microbatch_sharding(mesh))

  def one_step():
    nonlocal state
    state, metrics = step(state, batch)
    return metrics["loss"]

  seconds = roofline.median_seconds(one_step, steps)
  tokens = batch_size * seq_len
  return TrainStepTiming(seconds, tokens,
                         roofline.train_flops_per_token(config, seq_len) * tokens)


def time_decode(config: ModelConfig, params: nnx.State, batch_size: int, prompt_len: int,
                new_tokens: int, temperature: float = 1.0, reps: int = 3) -> DecodeTiming:
  """Median times of the sampler's prefill and of a decode step, sampling every row for
  `new_tokens` tokens (no stop token) after a random `prompt_len`-token prompt.

  Args:
    config: the model.
    params: its parameters.
    batch_size: rows decoded together, B.
    prompt_len: prompt tokens per row.
    new_tokens: tokens sampled per row (the first from the prefill's logits, so the decode
      loop runs new_tokens - 1 model steps).
    temperature: sampling temperature (0: greedy).
    reps: timed repetitions (after one compiling run).
  """
  graphdef, _ = transformer.abstract_model(config)
  sampler = sampler_lib.Sampler(graphdef, config, pad_id=0)
  rng = np.random.default_rng(0)
  prompts = rng.integers(1, config.vocab_size, (batch_size, prompt_len)).tolist()
  tokens, mask = (jnp.asarray(a) for a in sampler_lib.left_pad(prompts, 0))
  sampling = sampler_lib.SamplingParams(max_new_tokens=new_tokens, temperature=temperature)
  cache_len = prompt_len + new_tokens

  def prefill():
    return sampler.prefill(params, tokens, mask, sampler.init_cache(batch_size, cache_len))

  prefill_seconds = roofline.median_seconds(prefill, reps)
  decode_seconds = []
  for rep in range(reps + 1):  # the first compiles
    logits, positions, cache = jax.block_until_ready(prefill())
    start = time.perf_counter()
    jax.block_until_ready(sampler.decode(
        params, logits, positions, cache, jax.random.key(rep), sampling=sampling,
        stop_ids=jnp.zeros((0,), jnp.int32), pad_id=0))
    decode_seconds.append(time.perf_counter() - start)
  return DecodeTiming(float(np.median(decode_seconds[1:])) / (new_tokens - 1), prefill_seconds,
                      roofline.decode_bytes_per_step(config, batch_size, cache_len))
