"""Tests of the Hugging Face safetensors importer: tiny checkpoints written in the HF layout."""

import json
from pathlib import Path

from absl.testing import absltest, parameterized
import chex
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from autollm_jax.model import config as config_lib
from autollm_jax.model import safetensors_import, transformer

TINY = dict(vocab_size=50, embed_dim=16, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=4, mlp_dim=24, dtype="float32", param_dtype="float32")


def to_hf(params: nnx.State, config) -> dict[str, np.ndarray]:
  """Our params written the way transformers stores them ([out, in]; Gemma norms as w - 1)."""
  p = nnx.to_pure_dict(params)
  b = p["blocks"]
  gemma = config.family == "gemma3"
  norm = (lambda w: np.asarray(w) - 1.0) if gemma else np.asarray
  flat = lambda w: np.asarray(w).reshape(w.shape[0], -1).T  # [D, N, H] -> [N*H, D]
  out = {"model.embed_tokens.weight": np.asarray(p["embed"]),
         "model.norm.weight": norm(p["final_norm"]["scale"])}
  if not config.tie_embeddings:
    out["lm_head.weight"] = np.asarray(p["lm_head"]).T
  for i in range(config.num_layers):
    pre = f"model.layers.{i}."
    out[pre + "input_layernorm.weight"] = norm(b["attn_norm"]["scale"][i])
    for name in ("q", "k", "v"):
      out[pre + f"self_attn.{name}_proj.weight"] = flat(b[f"{name}_proj"][i])
    out[pre + "self_attn.o_proj.weight"] = np.asarray(b["o_proj"][i]).reshape(
        -1, config.embed_dim).T
    for name in ("gate", "up", "down"):
      out[pre + f"mlp.{name}_proj.weight"] = np.asarray(b[f"{name}_proj"][i]).T
    if config.qk_norm:
      out[pre + "self_attn.q_norm.weight"] = norm(b["q_norm"]["scale"][i])
      out[pre + "self_attn.k_norm.weight"] = norm(b["k_norm"]["scale"][i])
    if gemma:
      out[pre + "post_attention_layernorm.weight"] = norm(b["post_attn_norm"]["scale"][i])
      out[pre + "pre_feedforward_layernorm.weight"] = norm(b["mlp_norm"]["scale"][i])
      out[pre + "post_feedforward_layernorm.weight"] = norm(b["post_mlp_norm"]["scale"][i])
    else:
      out[pre + "post_attention_layernorm.weight"] = norm(b["mlp_norm"]["scale"][i])
  # safetensors writes the raw buffer: transposed views must be made contiguous.
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


class SafetensorsImportTest(parameterized.TestCase):

  @parameterized.parameters(("qwen3_1.7b", True), ("smollm2_135m", False),
                            ("gemma3_270m", True))
  def test_round_trip_gives_the_same_logits(self, name, tied):
    config = config_lib.get_config(name, tie_embeddings=tied, **TINY)
    model = transformer.create_model(config, seed=7)
    # Non-trivial norms, so that a missing Gemma +1 would show.
    for norm in (model.final_norm, model.blocks.attn_norm, model.blocks.mlp_norm):
      norm.scale[...] = norm.scale[...] * 1.5
    graphdef, params = nnx.split(model)
    directory = Path(self.create_tempdir().full_path)
    tensors = to_hf(params, config)
    names = sorted(tensors)
    half = len(names) // 2  # two shards, like large checkpoints
    if name == "gemma3_270m":  # multimodal checkpoints nest the text model
      tensors = {f"language_model.{k}": v for k, v in tensors.items()}
      names = sorted(tensors)
    save_file({k: tensors[k] for k in names[:half]}, directory / "model-00001.safetensors")
    save_file({k: tensors[k] for k in names[half:]}, directory / "model-00002.safetensors")
    loaded = safetensors_import.load_safetensors(directory, config)
    tokens = jnp.array([[1, 5, 9, 2]])
    want, _ = transformer.forward(graphdef, params, tokens, jnp.arange(4)[None])
    got, _ = transformer.forward(graphdef, loaded, tokens, jnp.arange(4)[None])
    chex.assert_trees_all_close(got, want, atol=1e-5)

  def test_shape_mismatch_is_a_clear_error(self):
    config = config_lib.get_config("qwen3_1.7b", **TINY)
    directory = Path(self.create_tempdir().full_path)
    (directory / "config.json").write_text(json.dumps({"hidden_size": 2048}))
    with self.assertRaisesRegex(ValueError, "hidden_size = 2048"):
      safetensors_import.load_safetensors(directory, config)
    with self.assertRaisesRegex(FileNotFoundError, "safetensors"):
      safetensors_import.load_safetensors(self.create_tempdir().full_path,
                                          config)


if __name__ == "__main__":
  absltest.main()
