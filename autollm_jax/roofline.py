"""Roofline arithmetic: the model's FLOPs per token, the bytes a decode step reads, and the
chip's two ceilings (bf16 matrix rate, copy bandwidth) measured in the running process.

FLOPs count a multiply-add as 2 and only matrix products (norms, RoPE, softmax and the
optimizer are left out, as in the usual model-FLOPs utilization, MFU):
  forward = 2 * matmul_params + sum over layers of 4 * num_heads * head_dim * keys,
where matmul_params are the weights every token multiplies (the blocks' projections and the
output head; the input embedding is a gather) and `keys` is the mean number of keys a query
is scored against. A training step costs 3 forwards (the backward pass is two matrix
products per forward one); the recomputation of rematerialized blocks is not counted.

Keys come in two counts: "causal" counts the keys a query may see (min(i + 1, window) for
the query at position i), the work the model needs, which MFU uses; "dense" counts every key
of the sequence, the work of an attention that scores the whole [T, T] matrix and masks it:
this project's einsum attention on a pass of at most `transformer.QUERY_BLOCK` tokens, what
XLA's cost analysis sees there (longer passes without a cache skip the query blocks' hidden
keys, about half of them).
"""

from __future__ import annotations

import time
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax.memory import param_count
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import cache_bytes

AttentionCount = Literal["causal", "dense"]


def matmul_params(config: ModelConfig) -> int:
  """Weights multiplied by every token: attention and MLP projections of each block, and the
  output head (the tied embedding counts here once; the input lookup is a gather)."""
  c = config
  attn = c.embed_dim * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
  mlp = 3 * c.embed_dim * c.mlp_dim
  return c.num_layers * (attn + mlp) + c.vocab_size * c.embed_dim


def mean_keys(config: ModelConfig, layer: int, seq_len: int,
              attention: AttentionCount = "causal") -> float:
  """Mean number of keys a query of a `seq_len`-token sequence is scored against in `layer`."""
  if attention == "dense":
    return float(seq_len)
  window = seq_len if config.is_global_layer(layer) else min(seq_len, config.sliding_window)
  return float(np.minimum(np.arange(1, seq_len + 1), window).mean())


def forward_flops_per_token(config: ModelConfig, seq_len: int,
                            attention: AttentionCount = "causal") -> float:
  """Matrix FLOPs of one forward pass per token of a `seq_len`-token sequence (see the module
  docstring)."""
  c = config
  scores = sum(4 * c.num_heads * c.head_dim * mean_keys(c, layer, seq_len, attention)
               for layer in range(c.num_layers))
  return 2.0 * matmul_params(c) + scores


def train_flops_per_token(config: ModelConfig, seq_len: int,
                          attention: AttentionCount = "causal") -> float:
  """Matrix FLOPs of a training step (forward and backward) per token: 3 forwards."""
  return 3.0 * forward_flops_per_token(config, seq_len, attention)


def decode_bytes_per_step(config: ModelConfig, batch_size: int, cache_len: int) -> int:
  """Bytes one decode step must read: every weight (in param_dtype) and the whole KV cache of
  `batch_size` x `cache_len` slots (this project's attention reads every slot, masked)."""
  weights = param_count(config) * jnp.dtype(config.param_dtype).itemsize
  return weights + cache_bytes(config, batch_size, cache_len)


def median_seconds(fn: Callable[[], object], reps: int) -> float:
  """Median wall time of `reps` calls of `fn` (each waited for), after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _on_accelerator() -> bool:
  return jax.default_backend() != "cpu"


def matmul_tflops(size: int | None = None, dtype: str = "bfloat16", reps: int = 10) -> float:
  """Measured rate (TFLOP/s) of a [size, size] x [size, size] matrix product in `dtype` on
  random data (default size: 8192 on an accelerator, 1024 on the CPU)."""
  n = size or (8192 if _on_accelerator() else 1024)
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), dtype)
  b = jax.random.normal(kb, (n, n), dtype)
  product = jax.jit(jnp.matmul)
  return 2.0 * n**3 / median_seconds(lambda: product(a, b), reps) / 1e12


def copy_gbps(nbytes: int | None = None, reps: int = 10) -> float:
  """Measured memory bandwidth (GB/s): bytes read plus bytes written by an elementwise pass
  over a float32 array of `nbytes` (default 1 GiB on an accelerator, 64 MiB on the CPU)."""
  nbytes = nbytes or (2**30 if _on_accelerator() else 2**26)
  x = jax.random.normal(jax.random.key(0), (nbytes // 4,), jnp.float32)
  scale = jax.jit(lambda x: x * 2.0)
  return 2.0 * x.nbytes / median_seconds(lambda: scale(x), reps) / 1e9
