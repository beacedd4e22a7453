"""Decoder configurations and the model registry.

One `ModelConfig` describes every decoder this project runs: the small models trained from
scratch, and the shapes of the pretrained Gemma3, SmolLM2 (Llama) and Qwen3 checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

Activation = Literal["silu", "gelu_tanh"]
Attention = Literal["auto", "einsum", "cudnn", "xla"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and switches of a decoder-only transformer.

  Attributes:
    name: registry name (stored in checkpoints to recognise the shape).
    family: "llama", "qwen3" or "gemma3" (informational; the switches below decide).
    vocab_size: embedding rows.
    embed_dim: model width D.
    num_layers: number of blocks L.
    num_heads: query heads N.
    num_kv_heads: key/value heads K (N % K == 0, grouped-query attention).
    head_dim: per-head width H.
    mlp_dim: hidden width F of the gated MLP.
    activation: gate activation, "silu" (SwiGLU) or "gelu_tanh" (GeGLU).
    norm_eps: RMSNorm epsilon.
    rope_base: RoPE base of global layers.
    local_rope_base: RoPE base of sliding-window layers.
    sliding_window: window of local layers (None: every layer is global).
    global_every: with a window, layer i is global when (i + 1) % global_every == 0.
    qk_norm: RMSNorm over each query/key head before RoPE (Qwen3, Gemma3).
    post_norms: extra RMSNorms on the attention and MLP outputs (Gemma3).
    scale_embeddings: multiply embeddings by sqrt(embed_dim) (Gemma).
    tie_embeddings: the output projection is the transposed embedding.
    query_scale: attention scale is query_scale ** -0.5 (None: head_dim).
    max_seq_len: longest sequence the model is used with (KV cache default).
    dtype: activation dtype ("float32" or "bfloat16").
    param_dtype: parameter dtype.
    remat: rematerialise each block in the backward pass.
    scan_layers: passes without a KV cache loop over the blocks with `lax.scan` (one block
      compiled: quick to compile for deep models); False unrolls the loop, which on CPUs
      trains a few-layer model faster (no stacked per-layer residuals to zero and slice).
    attention: how passes without a KV cache (training, scoring) attend: "auto" (cuDNN on a
      GPU backend in bf16/float16, else einsum; set "einsum" on ROCm), "einsum" (any
      backend), "cudnn" (jax.nn.dot_product_attention's fused flash-attention kernel, NVIDIA
      GPUs, bf16/float16) or "xla" (that call's portable implementation).
  """
  name: str
  family: str
  vocab_size: int
  embed_dim: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  activation: Activation = "silu"
  norm_eps: float = 1e-6
  rope_base: float = 10_000.0
  local_rope_base: float = 10_000.0
  sliding_window: int | None = None
  global_every: int = 1
  qk_norm: bool = False
  post_norms: bool = False
  scale_embeddings: bool = False
  tie_embeddings: bool = True
  query_scale: float | None = None
  max_seq_len: int = 2048
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  scan_layers: bool = True
  attention: Attention = "auto"

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"config {self.name}: num_heads={self.num_heads} is not a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if self.attention not in ("auto", "einsum", "cudnn", "xla"):
      raise ValueError(f"config {self.name}: attention={self.attention!r}; use 'auto', "
                       "'einsum', 'cudnn' (NVIDIA GPUs) or 'xla'")
    if self.activation not in ("silu", "gelu_tanh"):
      raise ValueError(f"config {self.name}: activation={self.activation!r}; "
                       "use 'silu' or 'gelu_tanh'")

  def is_global_layer(self, layer: int) -> bool:
    """Whether block `layer` attends over the whole context."""
    return self.sliding_window is None or (layer + 1) % self.global_every == 0

  def replace(self, **changes: Any) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> ModelConfig:
    fields = json.loads(text)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(fields) - known
    if unknown:
      raise ValueError(f"model config has unknown fields {sorted(unknown)}")
    return cls(**fields)

  def shape_signature(self) -> tuple[int, ...]:
    """The fields that decide parameter shapes (two configs with equal signatures can share
    a checkpoint)."""
    return (self.vocab_size, self.embed_dim, self.num_layers, self.num_heads,
            self.num_kv_heads, self.head_dim, self.mlp_dim, int(self.qk_norm),
            int(self.post_norms), int(self.tie_embeddings))


def _scratch(name: str, vocab: int, dim: int, layers: int, heads: int, kv: int,
             mlp: int) -> ModelConfig:
  # Qwen3-style blocks for the models trained from scratch on the environment's text.
  return ModelConfig(name=name, family="qwen3", vocab_size=vocab, embed_dim=dim,
                     num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=dim // heads,
                     mlp_dim=mlp, qk_norm=True, max_seq_len=4096)


_REGISTRY: dict[str, ModelConfig] = {
    # ~1M, ~10M and ~50M parameters with a 4096-piece SentencePiece vocabulary.
    "scratch_1m": _scratch("scratch_1m", 4096, 128, 4, 4, 2, 384),
    "scratch_10m": _scratch("scratch_10m", 4096, 320, 8, 8, 4, 960),
    "scratch_50m": _scratch("scratch_50m", 4096, 576, 12, 9, 3, 1920),
    # ~1B for training at scale (bench/train_bench.py): every width a multiple of 128 for the
    # tensor cores; bf16 compute on fp32 master weights, rematerialized blocks.
    "scratch_1b": _scratch("scratch_1b", 4096, 2048, 16, 16, 8, 8192).replace(
        dtype="bfloat16", remat=True),
    "gemma3_270m": ModelConfig(
        name="gemma3_270m", family="gemma3", vocab_size=262_144, embed_dim=640, num_layers=18,
        num_heads=4, num_kv_heads=1, head_dim=256, mlp_dim=2048, activation="gelu_tanh",
        norm_eps=1e-6, rope_base=1_000_000.0, local_rope_base=10_000.0, sliding_window=512,
        global_every=6, qk_norm=True, post_norms=True, scale_embeddings=True,
        tie_embeddings=True, query_scale=256.0, max_seq_len=32_768),
    "smollm2_135m": ModelConfig(
        name="smollm2_135m", family="llama", vocab_size=49_152, embed_dim=576, num_layers=30,
        num_heads=9, num_kv_heads=3, head_dim=64, mlp_dim=1536, norm_eps=1e-5,
        rope_base=100_000.0, tie_embeddings=True, max_seq_len=8192),
    "qwen3_1.7b": ModelConfig(
        name="qwen3_1.7b", family="qwen3", vocab_size=151_936, embed_dim=2048, num_layers=28,
        num_heads=16, num_kv_heads=8, head_dim=128, mlp_dim=6144, norm_eps=1e-6,
        rope_base=1_000_000.0, qk_norm=True, tie_embeddings=True, max_seq_len=40_960,
        dtype="bfloat16", param_dtype="bfloat16"),
    "qwen3_4b": ModelConfig(
        name="qwen3_4b", family="qwen3", vocab_size=151_936, embed_dim=2560, num_layers=36,
        num_heads=32, num_kv_heads=8, head_dim=128, mlp_dim=9728, norm_eps=1e-6,
        rope_base=1_000_000.0, qk_norm=True, tie_embeddings=True, max_seq_len=40_960,
        dtype="bfloat16", param_dtype="bfloat16"),
}


def get_config(name: str, **overrides: Any) -> ModelConfig:
  """The registered config `name`, with field `overrides` applied."""
  if name not in _REGISTRY:
    raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
  return _REGISTRY[name].replace(**overrides)

