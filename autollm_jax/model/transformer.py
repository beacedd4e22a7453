"""The decoder-only transformer (flax.nnx) shared by every backbone.

Blocks are stacked along a leading layer axis and run with `jax.lax.scan`, so a model compiles
one block whatever its depth (unless `scan_layers=False` unrolls the passes without a cache,
faster for few-layer models on CPUs). Sliding-window (local) and global layers differ only in two
per-layer scalars (window and RoPE base) that the scan carries alongside the parameters.

Use it functionally at jit boundaries: `graphdef, params = nnx.split(model)`, then
`forward(graphdef, params, ...)` inside `jax.jit`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import KVCache

_NO_WINDOW = 2**30
_MASKED = -1e30


def _fan_in_init(in_axis, out_axis):
  return jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                              in_axis=in_axis, out_axis=out_axis)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, computed in float32 (the scale is the full multiplier: Gemma's
  "1 + w" is folded in when weights are imported)."""

  def __init__(self, dim: int, eps: float, param_dtype: str):
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.eps = eps

  def __call__(self, x: Array) -> Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (normed * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def apply_rope(x: Float[Array, "B T N H"], positions: Int[Array, "B T"],
               base: Float[Array, ""]) -> Float[Array, "B T N H"]:
  """Rotary embedding in the rotate-half layout (first half of each head paired with the
  second half), as in the Hugging Face checkpoints."""
  half = x.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
  sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


# Queries are processed in blocks of this many: the [T, S] score matrix of a long sequence is
# then never held whole, which keeps the working set in cache (several times faster on CPUs).
QUERY_BLOCK = 256


def attend(q: Float[Array, "B T N H"], k: Float[Array, "B K S H"], v: Float[Array, "B K S H"],
           q_slots: Int[Array, "T"], key_mask: Bool[Array, "B S"],
           q_positions: Int[Array, "B T"], k_positions: Int[Array, "B S"],
           window: Int[Array, ""], scale: float, fused: str | None = None,
           self_contained: bool = False) -> Float[Array, "B T N H"]:
  """Grouped-query attention of queries at cache slots `q_slots` over all S key slots (keys
  and values in the KV cache's layout, kv heads before slots).

  A key at slot j is visible to a query at slot i when j <= i, key_mask[b, j], and their
  positions are less than `window` apart. Rows with no visible key (padding queries) get
  finite garbage, never NaN. Long query chunks are processed QUERY_BLOCK queries at a time,
  unless `fused` names a `jax.nn.dot_product_attention` implementation ("cudnn": a fused
  flash-attention kernel on NVIDIA GPUs that never holds the [B, N, T, S] scores; "xla": the
  same call on any backend), which gets the visibility as a boolean mask.
  `self_contained` says the queries are the S keys' own slots 0..S-1 (a pass without a
  cache): each query block then reads only the keys up to its last slot, which the causal
  rule hides from no query of the block (about half the scores of a long sequence).
  """
  if fused is not None:
    visible = _visible(q_slots, key_mask, q_positions, k_positions, window, k.shape[2])
    return jax.nn.dot_product_attention(q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2),
                                        mask=visible[:, None], scale=scale,
                                        implementation=fused)
  t = q.shape[1]
  if t <= QUERY_BLOCK:
    return _attend_block(q, k, v, q_slots, key_mask, q_positions, k_positions, window, scale)
  if self_contained:
    if k.shape[2] != t:
      raise ValueError(f"self_contained attention needs as many keys as queries, got "
                       f"{k.shape[2]} keys for {t} queries")
    return jnp.concatenate([
        _attend_block(q[:, a:a + QUERY_BLOCK], k[:, :, :a + QUERY_BLOCK],
                      v[:, :, :a + QUERY_BLOCK], q_slots[a:a + QUERY_BLOCK],
                      key_mask[:, :a + QUERY_BLOCK], q_positions[:, a:a + QUERY_BLOCK],
                      k_positions[:, :a + QUERY_BLOCK], window, scale)
        for a in range(0, t, QUERY_BLOCK)], axis=1)
  blocks = -(-t // QUERY_BLOCK)
  pad = blocks * QUERY_BLOCK - t  # padding queries see slot 0 only; their rows are dropped
  q = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
  q_slots = jnp.pad(q_slots, (0, pad))
  q_positions = jnp.pad(q_positions, ((0, 0), (0, pad)))

  def split(x, axis):
    x = jnp.moveaxis(x, axis, 0)
    return x.reshape(blocks, QUERY_BLOCK, *x.shape[1:])

  def one(args):
    qb, slots, positions = args
    return _attend_block(jnp.moveaxis(qb, 0, 1), k, v, slots, key_mask,
                         jnp.moveaxis(positions, 0, 1), k_positions, window, scale)

  out = jax.lax.map(one, (split(q, 1), split(q_slots, 0), split(q_positions, 1)))
  return jnp.moveaxis(out, 0, 1).reshape(q.shape[0], blocks * QUERY_BLOCK,
                                         *q.shape[2:])[:, :t]


def _visible(q_slots, key_mask, q_positions, k_positions, window, num_slots
             ) -> Bool[Array, "B T S"]:
  """Which key slots each query sees (`attend`'s rule)."""
  k_slots = jnp.arange(num_slots)
  causal = k_slots[None, :] <= q_slots[:, None]
  near = q_positions[:, :, None] - k_positions[:, None, :] < window
  return causal[None] & near & key_mask[:, None, :]


def _attend_block(q, k, v, q_slots, key_mask, q_positions, k_positions, window, scale):
  """`attend` for one block of queries (same arguments)."""
  b, t, n, h = q.shape
  kv_heads = k.shape[1]
  q = q.reshape(b, t, kv_heads, n // kv_heads, h)
  logits = jnp.einsum("btkgh,bksh->bkgts", q, k, preferred_element_type=jnp.float32) * scale
  visible = _visible(q_slots, key_mask, q_positions, k_positions, window, k.shape[2])
  logits = jnp.where(visible[:, None, None], logits, _MASKED)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  # Heads-first output, then moved: asked for "btkgh" directly, XLA's CPU backend transposes
  # the values to [B, K, H, S] first (one decode step's attention: 8.7 -> 3.0 ms per layer at
  # batch 32 and 2,000 slots).
  out = jnp.moveaxis(jnp.einsum("bkgts,bksh->bkgth", probs, v), 3, 1)
  return out.reshape(b, t, n, h)


def fused_attention(config: ModelConfig) -> str | None:
  """The `jax.nn.dot_product_attention` implementation that passes without a KV cache use
  under `config.attention`, or None for the einsum attention. "auto" picks cuDNN's fused
  kernel on a GPU backend in bf16 or float16 (the dtypes it takes), the einsum elsewhere."""
  if config.attention == "auto":
    fast = jax.default_backend() == "gpu" and config.dtype in ("bfloat16", "float16")
    return "cudnn" if fast else None
  return None if config.attention == "einsum" else config.attention


class Block(nnx.Module):
  """Pre-norm attention + gated MLP, with the optional Qwen3/Gemma3 extra norms."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c, pd = config, config.param_dtype
    d, n, kv, h, f = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
    self.config = config
    self.attn_norm = RMSNorm(d, c.norm_eps, pd)
    self.q_proj = nnx.Param(_fan_in_init(0, (1, 2))(rngs.params(), (d, n, h), pd))
    self.k_proj = nnx.Param(_fan_in_init(0, (1, 2))(rngs.params(), (d, kv, h), pd))
    self.v_proj = nnx.Param(_fan_in_init(0, (1, 2))(rngs.params(), (d, kv, h), pd))
    self.o_proj = nnx.Param(_fan_in_init((0, 1), 2)(rngs.params(), (n, h, d), pd))
    if c.qk_norm:
      self.q_norm = RMSNorm(h, c.norm_eps, pd)
      self.k_norm = RMSNorm(h, c.norm_eps, pd)
    self.mlp_norm = RMSNorm(d, c.norm_eps, pd)
    self.gate_proj = nnx.Param(_fan_in_init(0, 1)(rngs.params(), (d, f), pd))
    self.up_proj = nnx.Param(_fan_in_init(0, 1)(rngs.params(), (d, f), pd))
    self.down_proj = nnx.Param(_fan_in_init(0, 1)(rngs.params(), (f, d), pd))
    if c.post_norms:
      self.post_attn_norm = RMSNorm(d, c.norm_eps, pd)
      self.post_mlp_norm = RMSNorm(d, c.norm_eps, pd)

  def project_qkv(self, x: Float[Array, "B T D"], positions: Int[Array, "B T"],
                  rope_base: Float[Array, ""]) -> tuple[Array, Array, Array]:
    """The chunk's queries [B, T, N, H], keys and values [B, K, T, H] (the cache's layout;
    RoPE applied)."""
    c = self.config
    dt = jnp.dtype(c.dtype)
    h = self.attn_norm(x)
    q = jnp.einsum("btd,dnh->btnh", h, self.q_proj[...].astype(dt))
    k = jnp.einsum("btd,dkh->btkh", h, self.k_proj[...].astype(dt))
    v = jnp.einsum("btd,dkh->btkh", h, self.v_proj[...].astype(dt))
    if c.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    k = apply_rope(k, positions, rope_base)
    return apply_rope(q, positions, rope_base), jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)

  def attend_and_mlp(self, x: Float[Array, "B T D"], q: Float[Array, "B T N H"],
                     keys: Float[Array, "B K S H"], values: Float[Array, "B K S H"],
                     positions: Int[Array, "B T"], key_mask: Bool[Array, "B S"],
                     key_positions: Int[Array, "B S"], index: Int[Array, ""],
                     window: Int[Array, ""], fused: str | None = None,
                     self_contained: bool = False) -> Float[Array, "B T D"]:
    """The rest of the block: the chunk's queries (at slots index..index+T-1) attend to the
    S key slots (`attend`, with its `fused` and `self_contained` choices), then the residual
    MLP. Returns the block's output [B, T, D]."""
    c = self.config
    dt = jnp.dtype(c.dtype)
    q_slots = index + jnp.arange(x.shape[1])
    scale = (c.query_scale or c.head_dim) ** -0.5
    a = attend(q, keys.astype(dt), values.astype(dt), q_slots, key_mask, positions,
               key_positions, window, scale, fused, self_contained)
    a = jnp.einsum("btnh,nhd->btd", a, self.o_proj[...].astype(dt))
    if c.post_norms:
      a = self.post_attn_norm(a)
    x = x + a
    h = self.mlp_norm(x)
    gate = jnp.einsum("btd,df->btf", h, self.gate_proj[...].astype(dt))
    up = jnp.einsum("btd,df->btf", h, self.up_proj[...].astype(dt))
    act = jax.nn.silu(gate) if c.activation == "silu" else jax.nn.gelu(gate, approximate=True)
    m = jnp.einsum("btf,fd->btd", act * up, self.down_proj[...].astype(dt))
    if c.post_norms:
      m = self.post_mlp_norm(m)
    return x + m


class Transformer(nnx.Module):
  """Embedding, L stacked blocks (leading axis L on every block parameter), final norm and
  the (possibly tied) output projection."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c = config
    self.config = config
    self.embed = nnx.Param(
        jax.random.normal(rngs.params(), (c.vocab_size, c.embed_dim), c.param_dtype)
        * (1.0 if c.scale_embeddings else 0.02))

    @nnx.split_rngs(splits=c.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make_blocks(rngs: nnx.Rngs) -> Block:
      return Block(config, rngs=rngs)

    self.blocks = make_blocks(rngs)
    self.final_norm = RMSNorm(c.embed_dim, c.norm_eps, c.param_dtype)
    if not c.tie_embeddings:
      self.lm_head = nnx.Param(_fan_in_init(0, 1)(rngs.params(), (c.embed_dim, c.vocab_size),
                                                  c.param_dtype))

  def _layer_scalars(self) -> tuple[Array, Array]:
    c = self.config
    glob = [c.is_global_layer(i) for i in range(c.num_layers)]
    windows = jnp.array([_NO_WINDOW if g else c.sliding_window for g in glob], jnp.int32)
    bases = jnp.array([c.rope_base if g else c.local_rope_base for g in glob], jnp.float32)
    return windows, bases

  def hidden_states(self, tokens: Int[Array, "B T"], positions: Int[Array, "B T"],
                    input_mask: Bool[Array, "B T"] | None = None, cache: KVCache | None = None
                    ) -> tuple[Float[Array, "B T D"], KVCache | None]:
    """Final-norm hidden states of `tokens`.

    Args:
      tokens: [B, T] token ids.
      positions: [B, T] RoPE positions (0 at each sequence's first real token).
      input_mask: [B, T] real (True) vs padding (False) tokens; default all real.
      cache: a KVCache to extend (the chunk is written at cache.index), or None for a
        self-contained causal pass.
    Returns:
      ([B, T, D] hidden states, the updated cache or None).
    """
    c = self.config
    dt = jnp.dtype(c.dtype)
    if input_mask is None:
      input_mask = jnp.ones(tokens.shape, bool)
    x = self.embed[...].astype(dt)[tokens]
    if c.scale_embeddings:
      x = x * jnp.asarray(math.sqrt(c.embed_dim), dt)
    if cache is None:
      key_mask, key_positions, index = input_mask, positions, jnp.zeros((), jnp.int32)
    else:
      index = cache.index
      key_mask = jax.lax.dynamic_update_slice(cache.key_mask, input_mask, (0, index))
      key_positions = jax.lax.dynamic_update_slice(cache.positions,
                                                   positions.astype(jnp.int32), (0, index))
    windows, bases = self._layer_scalars()
    block_def, block_params = nnx.split(self.blocks)
    layers = (block_params, jnp.arange(c.num_layers), windows, bases)

    if cache is None:
      fused = fused_attention(c)

      def body(x, layer):
        params, _, window, base = layer
        block = nnx.merge(block_def, params)
        q, k, v = block.project_qkv(x, positions, base)
        return block.attend_and_mlp(x, q, k, v, positions, key_mask, key_positions, index,
                                    window, fused, self_contained=True), None

      if c.remat:
        body = jax.checkpoint(body, prevent_cse=False)
      x, _ = jax.lax.scan(body, x, layers, unroll=not c.scan_layers)
      return self.final_norm(x), None

    # The whole cache rides in the scan's carry and only the chunk's slots are written, in
    # place: as a scan input/output it would be copied whole at every decode step.
    def cached_body(carry, layer):
      x, k_all, v_all = carry
      params, i, window, base = layer
      block = nnx.merge(block_def, params)
      q, k, v = block.project_qkv(x, positions, base)
      k_all = jax.lax.dynamic_update_slice(k_all, k[None].astype(k_all.dtype),
                                           (i, 0, 0, index, 0))
      v_all = jax.lax.dynamic_update_slice(v_all, v[None].astype(v_all.dtype),
                                           (i, 0, 0, index, 0))
      x = block.attend_and_mlp(x, q, k_all[i], v_all[i], positions, key_mask, key_positions,
                               index, window)
      return (x, k_all, v_all), None

    (x, k, v), _ = jax.lax.scan(cached_body, (x, cache.k, cache.v), layers)
    return self.final_norm(x), KVCache(k=k, v=v, key_mask=key_mask, positions=key_positions,
                                       index=index + tokens.shape[1])

  def logits(self, hidden: Float[Array, "... D"]) -> Float[Array, "... V"]:
    """Float32 next-token logits from hidden states."""
    dt = jnp.dtype(self.config.dtype)
    if self.config.tie_embeddings:
      return jnp.einsum("...d,vd->...v", hidden, self.embed[...].astype(dt),
                        preferred_element_type=jnp.float32)
    return jnp.einsum("...d,dv->...v", hidden, self.lm_head[...].astype(dt),
                      preferred_element_type=jnp.float32)

  def __call__(self, tokens: Int[Array, "B T"], positions: Int[Array, "B T"],
               input_mask: Bool[Array, "B T"] | None = None, cache: KVCache | None = None
               ) -> tuple[Float[Array, "B T V"], KVCache | None]:
    """Logits [B, T, V] (float32) of every position, and the updated cache (see
    `hidden_states`)."""
    hidden, cache = self.hidden_states(tokens, positions, input_mask, cache)
    return self.logits(hidden), cache


def create_model(config: ModelConfig, seed: int = 0) -> Transformer:
  """A randomly initialised model."""
  return Transformer(config, rngs=nnx.Rngs(seed))


def abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, params with jax.ShapeDtypeStruct leaves), without allocating."""
  return nnx.split(nnx.eval_shape(lambda: create_model(config)))


def forward(graphdef: nnx.GraphDef, params: nnx.State, tokens: Int[Array, "B T"],
            positions: Int[Array, "B T"], input_mask: Bool[Array, "B T"] | None = None,
            cache: KVCache | None = None) -> tuple[Float[Array, "B T V"], KVCache | None]:
  """Pure forward pass: `Transformer.__call__` on the merged (graphdef, params)."""
  return nnx.merge(graphdef, params)(tokens, positions, input_mask, cache)


def default_positions(input_mask: Bool[Array, "B T"]) -> Int[Array, "B T"]:
  """Positions for left-padded rows: 0 at the first real token, counting real tokens."""
  return jnp.maximum(jnp.cumsum(input_mask.astype(jnp.int32), axis=-1) - 1, 0)


def param_count(params: nnx.State) -> int:
  """Number of parameters in a params state."""
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))
