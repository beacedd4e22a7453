"""What a model config needs in memory, printed by launch scripts before they allocate.

Estimates, not measurements: activations count the tensors a block keeps for its backward pass
(without rematerialisation) or only the block inputs plus one block's recomputation (with it);
XLA may fuse some away or add temporaries. The attention scores are counted as the attention
implementation of a training pass makes them (`attention_scores`). `compiled_footprint` reads
the figures XLA gives for a compiled step instead (per device, exact for that backend).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import cache_bytes


def param_count(config: ModelConfig) -> int:
  """Number of parameters of the decoder for `config` (no allocation)."""
  c = config
  d, h = c.embed_dim, c.head_dim
  attn = d * h * (2 * c.num_heads + 2 * c.num_kv_heads)
  mlp = 3 * d * c.mlp_dim
  norms = d * (4 if c.post_norms else 2) + (2 * h if c.qk_norm else 0)
  head = 0 if c.tie_embeddings else d * c.vocab_size
  return c.vocab_size * d + c.num_layers * (attn + mlp + norms) + d + head


def tree_bytes(tree) -> int:
  """Bytes of every array leaf of a pytree (NumPy or JAX; measured, not estimated)."""
  return sum(x.nbytes if hasattr(x, "nbytes") else np.asarray(x).nbytes
             for x in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Bytes needed by one model replica (divide by the sharding factor for per-device).

  Attributes:
    params: parameter count.
    param_bytes: parameters in param_dtype.
    optimizer_bytes: AdamW moments (two float32 copies) plus float32 gradients.
    kv_cache_bytes: the sampler's KV cache for batch_size x seq_len.
    activation_bytes: training activations kept for the backward pass, no remat.
    activation_remat_bytes: the same with every block rematerialised.
    batch_size, seq_len: the shapes the estimate is for.
  """
  params: int
  param_bytes: int
  optimizer_bytes: int
  kv_cache_bytes: int
  activation_bytes: int
  activation_remat_bytes: int
  batch_size: int
  seq_len: int

  def summary(self) -> str:
    """One line per quantity, in GiB."""
    gib = lambda b: f"{b / 2**30:8.3f} GiB"
    return "\n".join([
        f"memory estimate (batch {self.batch_size} x {self.seq_len} tokens, one replica):",
        f"  parameters       {self.params / 1e6:9.1f} M  {gib(self.param_bytes)}",
        f"  optimizer+grads              {gib(self.optimizer_bytes)}",
        f"  KV cache                     {gib(self.kv_cache_bytes)}",
        f"  activations                  {gib(self.activation_bytes)}",
        f"  activations (remat)          {gib(self.activation_remat_bytes)}",
    ])


def attention_scores(config: ModelConfig, batch_size: int, seq_len: int,
                     fused: str | None) -> int:
  """Attention scores one layer of a training pass (no KV cache) makes, in elements.

  Every layer makes the same: a local layer's window is a mask over the same scores
  (`transformer.attend`), not fewer of them.

  Args:
    config: the model config.
    batch_size, seq_len: B and T.
    fused: the pass's `transformer.fused_attention(config)`: "cudnn" keeps only the softmax
      statistics (B x N x T), any other fused implementation the whole [B, N, T, T]; None,
      the einsum attention, a query block of `transformer.QUERY_BLOCK` scores only the keys up
      to its last query (all T keys where T is at most one block).
  Returns:
    The element count.
  """
  if fused == "cudnn":
    return batch_size * config.num_heads * seq_len
  block = transformer.QUERY_BLOCK
  if fused is not None or seq_len <= block:
    pairs = seq_len * seq_len
  else:
    pairs = sum(min(block, seq_len - a) * min(a + block, seq_len)
                for a in range(0, seq_len, block))
  return batch_size * config.num_heads * pairs


def estimate(config: ModelConfig, batch_size: int, seq_len: int,
             fused: str | None = None) -> MemoryEstimate:
  """Memory for training or sampling `config` on batch_size sequences of seq_len tokens.

  Args:
    config: the model config.
    batch_size: B.
    seq_len: T (prompt plus generated tokens for the KV cache).
    fused: the training pass's attention implementation (`attention_scores`); None: the
      einsum attention.
  Returns:
    MemoryEstimate.
  """
  c = config
  n = param_count(c)
  act = jnp.dtype(c.dtype).itemsize
  tokens = batch_size * seq_len
  per_token = (6 * c.embed_dim + 2 * c.num_heads * c.head_dim + 2 * c.num_kv_heads * c.head_dim
               + 4 * c.mlp_dim) * act
  scores = 4 * attention_scores(c, batch_size, seq_len, fused)  # float32, per layer
  logits = 2 * tokens * c.vocab_size * 4  # float32 logits and their gradient
  return MemoryEstimate(
      params=n, param_bytes=n * jnp.dtype(c.param_dtype).itemsize, optimizer_bytes=3 * n * 4,
      kv_cache_bytes=cache_bytes(c, batch_size, seq_len),
      activation_bytes=c.num_layers * (tokens * per_token + scores) + logits,
      activation_remat_bytes=(c.num_layers * tokens * c.embed_dim * act + tokens * per_token
                              + scores + logits),
      batch_size=batch_size, seq_len=seq_len)


@dataclasses.dataclass(frozen=True)
class CompiledFootprint:
  """Bytes one device holds to run a compiled computation, as XLA's memory analysis gives them.

  Attributes:
    arguments: the inputs (for a train step: parameters, optimizer state, batch).
    outputs: the outputs, of which `aliased` reuse donated input buffers.
    aliased: output bytes written in place of donated arguments.
    temporaries: the working set (activations kept for the backward pass, gradients, ...).
  """
  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    """Arguments, outputs not written in place and temporaries, all live at once."""
    return self.arguments + self.outputs - self.aliased + self.temporaries

  def summary(self, what: str) -> str:
    gib = lambda b: f"{b / 2**30:.3f} GiB"
    return (f"compiled {what}, per device: {gib(self.peak)} (arguments {gib(self.arguments)}, "
            f"outputs {gib(self.outputs - self.aliased)} besides the donated ones, "
            f"temporaries {gib(self.temporaries)})")


def compiled_footprint(compiled: jax.stages.Compiled) -> CompiledFootprint | None:
  """`compiled`'s memory analysis, or None where the backend gives none."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return CompiledFootprint(arguments=stats.argument_size_in_bytes,
                           outputs=stats.output_size_in_bytes,
                           aliased=stats.alias_size_in_bytes,
                           temporaries=stats.temp_size_in_bytes)
