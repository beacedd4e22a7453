"""The key/value cache: an explicit pytree passed into and returned from the decoder."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from autollm_jax.model.config import ModelConfig


@flax.struct.dataclass
class KVCache:
  """Keys and values of every layer, written slot by slot.

  Attributes:
    k: [L, B, K, S, H] keys (after RoPE), kv heads before slots: a decode step's attention
      then reads each head's keys as one [S, H] matrix, with no transpose (on a CPU, with a
      [S, K, H] layout one decode step's attention took 21 ms per layer at batch 32 and 2,000
      slots; 7.4 ms with this one).
    v: [L, B, K, S, H] values.
    key_mask: [B, S] which slots hold real tokens (left padding and unwritten slots are False).
    positions: [B, S] int32 position of the token in each slot (sliding windows count
      positions, not slots, since a row may leave masked gaps).
    index: [] int32, the next slot to write (shared by the batch: prompts are left-padded).
  """
  k: Array
  v: Array
  key_mask: Bool[Array, "B S"]
  positions: Int[Array, "B S"]
  index: Int[Array, ""]

  @property
  def length(self) -> int:
    """Number of slots S."""
    return self.k.shape[3]


def init_cache(config: ModelConfig, batch_size: int, length: int,
               dtype: str | None = None) -> KVCache:
  """An empty cache for `batch_size` sequences of up to `length` tokens.

  Args:
    config: the model's config (layers, kv heads, head dim).
    batch_size: B.
    length: S, the number of slots (prompt plus new tokens).
    dtype: cache dtype; default the model's activation dtype.
  Returns:
    A KVCache of zeros with index 0.
  """
  shape = (config.num_layers, batch_size, config.num_kv_heads, length, config.head_dim)
  dtype = jnp.dtype(dtype or config.dtype)
  return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                 key_mask=jnp.zeros((batch_size, length), bool),
                 positions=jnp.zeros((batch_size, length), jnp.int32),
                 index=jnp.zeros((), jnp.int32))


def cache_bytes(config: ModelConfig, batch_size: int, length: int,
                dtype: str | None = None) -> int:
  """Bytes of a cache from `init_cache` with the same arguments."""
  per = jnp.dtype(dtype or config.dtype).itemsize
  return 2 * config.num_layers * batch_size * length * config.num_kv_heads * config.head_dim * per


def cache_shape(config: ModelConfig, batch_size: int, length: int) -> KVCache:
  """The cache's abstract shapes (jax.ShapeDtypeStruct leaves)."""
  return jax.eval_shape(lambda: init_cache(config, batch_size, length))
