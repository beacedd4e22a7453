"""Import decoder weights from Hugging Face safetensors (Qwen3, Llama/SmolLM2, Gemma3).

Hugging Face keeps matrices as [out, in] and Gemma's RMSNorm weights as w in x * (1 + w); the
decoder keeps [in, out] (split per head) and the full multiplier, so Gemma norms get +1 here.
Gemma3 multimodal checkpoints (`language_model.` prefix) load their text decoder.

`load_pretrained_dir` loads a whole Qwen3 or Llama checkpoint directory as a policy backbone:
shapes from its config.json, weights, and its byte-level BPE tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors import safe_open

from autollm_jax.model import tokenizers
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.weights import Pretrained, assemble_params, stack_layers

# Hugging Face layer tensor -> (our block parameter, kind); `mlp_norm` differs by family.
_LAYER_TENSORS = {
    "input_layernorm": ("attn_norm.scale", "norm"),
    "self_attn.q_proj": ("q_proj", "q"),
    "self_attn.k_proj": ("k_proj", "kv"),
    "self_attn.v_proj": ("v_proj", "kv"),
    "self_attn.o_proj": ("o_proj", "o"),
    "self_attn.q_norm": ("q_norm.scale", "norm"),
    "self_attn.k_norm": ("k_norm.scale", "norm"),
    "mlp.gate_proj": ("gate_proj", "in_out"),
    "mlp.up_proj": ("up_proj", "in_out"),
    "mlp.down_proj": ("down_proj", "in_out"),
}
# config.json field -> ModelConfig field, the shapes every family's config.json gives.
_HF_SHAPES = {"hidden_size": "embed_dim", "num_hidden_layers": "num_layers",
              "num_attention_heads": "num_heads", "num_key_value_heads": "num_kv_heads",
              "intermediate_size": "mlp_dim"}
_GEMMA_NORMS = {
    "post_attention_layernorm": "post_attn_norm.scale",
    "pre_feedforward_layernorm": "mlp_norm.scale",
    "post_feedforward_layernorm": "post_mlp_norm.scale",
}


def safetensors_files(path: str | Path) -> list[Path]:
  """The .safetensors files of a checkpoint directory (or the single file given)."""
  path = Path(path)
  if path.is_file():
    return [path]
  files = sorted(path.glob("*.safetensors"))
  if not files:
    raise FileNotFoundError(f"{path}: no *.safetensors files; pass the directory holding the "
                            "Hugging Face checkpoint (config.json, model*.safetensors)")
  return files


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
  """Every tensor as float32 numpy, keyed by name with any `language_model.` prefix dropped."""
  out = {}
  for file in safetensors_files(path):
    with safe_open(file, framework="flax") as f:  # the flax reader handles bfloat16
      for name in f.keys():
        out[name.removeprefix("language_model.")] = np.asarray(f.get_tensor(name), np.float32)
  return out


def convert_tensors(tensors: dict[str, np.ndarray], config: ModelConfig
                    ) -> dict[str, np.ndarray]:
  """Hugging Face tensors -> the decoder's named parameters (see `weights.param_names`)."""
  c = config
  gemma = c.family == "gemma3"
  norm = (lambda w: w + 1.0) if gemma else (lambda w: w)
  named = {"embed": tensors["model.embed_tokens.weight"],
           "final_norm.scale": norm(tensors["model.norm.weight"])}
  if not c.tie_embeddings:
    named["lm_head"] = tensors["lm_head.weight"].T
  layers = []
  for i in range(c.num_layers):
    prefix = f"model.layers.{i}."
    layer = {}
    for hf_name, (name, kind) in _LAYER_TENSORS.items():
      w = tensors.get(f"{prefix}{hf_name}.weight")
      if w is None:
        continue
      if kind == "norm":
        w = norm(w)
      elif kind == "q":
        w = w.T.reshape(c.embed_dim, c.num_heads, c.head_dim)
      elif kind == "kv":
        w = w.T.reshape(c.embed_dim, c.num_kv_heads, c.head_dim)
      elif kind == "o":
        w = w.T.reshape(c.num_heads, c.head_dim, c.embed_dim)
      else:
        w = w.T
      layer[name] = w
    if gemma:
      for hf_name, name in _GEMMA_NORMS.items():
        layer[name] = norm(tensors[f"{prefix}{hf_name}.weight"])
    else:
      layer["mlp_norm.scale"] = tensors[f"{prefix}post_attention_layernorm.weight"]
    layers.append(layer)
  named.update(stack_layers(layers))
  return named


def check_hf_config(path: str | Path, config: ModelConfig) -> None:
  """If the checkpoint directory has a config.json, raise ValueError on a shape mismatch."""
  file = Path(path) / "config.json"
  if not file.exists():
    return
  hf = json.loads(file.read_text())
  hf = hf.get("text_config", hf)
  fields = {theirs: getattr(config, ours) for theirs, ours in _HF_SHAPES.items()}
  for key, want in {**fields, "vocab_size": config.vocab_size}.items():
    if key in hf and hf[key] != want:
      raise ValueError(f"{file}: {key} = {hf[key]} but model {config.name!r} has {want}; "
                       "pick the matching --model")


def load_safetensors(path: str | Path, config: ModelConfig) -> nnx.State:
  """Params state of `config` from a Hugging Face checkpoint directory or file.

  Raises:
    FileNotFoundError: no safetensors files. ValueError: weights of another shape.
  """
  check_hf_config(path, config)
  return assemble_params(config, convert_tensors(read_tensors(path), config), str(path))


# config.json field -> ModelConfig field: beyond the shapes every family shares, what it
# fully describes of the families `load_pretrained_dir` reads.
_HF_CONFIG_FIELDS = {**_HF_SHAPES, "head_dim": "head_dim", "rms_norm_eps": "norm_eps",
                     "rope_theta": "rope_base", "tie_word_embeddings": "tie_embeddings"}
_HF_FAMILIES = {"qwen3": "qwen3", "llama": "llama"}  # config.json model_type -> family
# Options of these families the decoder does not implement: set, they would load wrong.
_HF_UNSUPPORTED = ("attention_bias", "mlp_bias", "rope_scaling", "use_sliding_window")


def hf_model_config(directory: str | Path, template: ModelConfig, vocab_size: int
                    ) -> ModelConfig:
  """`template` (a registry config of the same family) with the shapes of a checkpoint's
  config.json, and `vocab_size` embedding rows: a checkpoint pads its embedding past the
  tokenizer's last id (Qwen3: 151,936 rows for 151,669 tokens), rows that no token reads.

  Raises:
    ValueError: no config.json, another family, an option the decoder lacks (biases, RoPE
      scaling, sliding windows), or fewer embedding rows than tokens.
  """
  file = Path(directory) / "config.json"
  if not file.is_file():
    raise ValueError(f"{file} is missing: a Hugging Face checkpoint directory describes its "
                     "model there")
  hf = json.loads(file.read_text())
  if _HF_FAMILIES.get(hf.get("model_type")) != template.family:
    raise ValueError(f"{file}: model_type {hf.get('model_type')!r} is not the {template.family} "
                     f"family of config.model.name={template.name!r}; pick a model name of its "
                     f"family (model types read here: {', '.join(_HF_FAMILIES)})")
  unsupported = [key for key in _HF_UNSUPPORTED if hf.get(key)]
  if unsupported:
    raise ValueError(f"{file}: {', '.join(f'{k}={hf[k]!r}' for k in unsupported)}: the "
                     "decoder has no biases, RoPE scaling or sliding windows for this family")
  if hf.get("vocab_size", vocab_size) < vocab_size:
    raise ValueError(f"{file}: vocab_size {hf['vocab_size']} is less than its tokenizer's "
                     f"{vocab_size} tokens")
  fields = {ours: hf[theirs] for theirs, ours in _HF_CONFIG_FIELDS.items() if theirs in hf}
  fields.setdefault("head_dim", hf["hidden_size"] // hf["num_attention_heads"])
  return template.replace(vocab_size=vocab_size, **fields)


def load_pretrained_dir(directory: str | Path, template: ModelConfig) -> Pretrained:
  """A Qwen3 or Llama checkpoint directory (config.json, tokenizer.json, *.safetensors) as
  `Pretrained`: `template`'s family, dtypes and options with the checkpoint's shapes, the
  embedding cut to the tokenizer's ids (`hf_model_config`), and its byte-level BPE."""
  tokenizer = tokenizers.byte_bpe_from_hf(directory)
  config = hf_model_config(directory, template, tokenizer.vocab_size)
  tensors = read_tensors(directory)
  for name in ("model.embed_tokens.weight", "lm_head.weight"):
    if name in tensors:
      tensors[name] = tensors[name][:config.vocab_size]
  params = assemble_params(config, convert_tensors(tensors, config), str(directory))
  return Pretrained(config, params, tokenizer)
