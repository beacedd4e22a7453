"""Tests of the Hugging Face safetensors importer: tiny checkpoints written in the HF layout."""

import json
from pathlib import Path

from absl.testing import absltest, parameterized
import chex
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file
import tokenizers

from autollm_jax import config_files
from autollm_jax import grammar
from autollm_jax import pipeline
from autollm_jax import protocol
from autollm_jax import protocol_tokenizer
from autollm_jax.model import config as config_lib
from autollm_jax.model import safetensors_import, transformer

ROOT = Path(__file__).resolve().parents[1]

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

  def test_a_checkpoint_directory_is_a_backbone_with_its_tokenizer(self):
    directory = Path(self.create_tempdir().full_path)
    tokenizer = _write_byte_bpe(directory)
    tokens = tokenizer.get_vocab_size(with_added_tokens=True)
    # The checkpoint pads its embedding past the tokenizer's last id, as Qwen3's does.
    config = config_lib.get_config("qwen3_1.7b", **{**TINY, "vocab_size": tokens + 13})
    model = transformer.create_model(config, seed=3)
    graphdef, params = nnx.split(model)
    save_file(to_hf(params, config), directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps({
        "model_type": "qwen3", "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 4,
        "intermediate_size": 24, "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base, "tie_word_embeddings": True,
        "vocab_size": tokens + 13, "bos_token_id": None,
        "eos_token_id": tokenizer.token_to_id("<|im_end|>")}))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"pad_token": "<|endoftext|>"}))

    template = config_lib.get_config("qwen3_1.7b", dtype="float32", param_dtype="float32")
    loaded = safetensors_import.load_pretrained_dir(directory, template)
    self.assertEqual(loaded.config, config.replace(vocab_size=tokens))
    ids = jnp.array([[1, 5, 9, 2]])
    want, _ = transformer.forward(graphdef, params, ids, jnp.arange(4)[None])
    got, _ = transformer.forward(nnx.graphdef(transformer.create_model(loaded.config)),
                                 loaded.params, ids, jnp.arange(4)[None])
    chex.assert_trees_all_close(got, want[..., :tokens], atol=1e-5)
    text = "lr=1.95e-03 bs=6.40e+01"
    self.assertEqual(loaded.tokenizer.decode(loaded.tokenizer.encode(text)), text)
    self.assertEqual((loaded.tokenizer.bos_id, loaded.tokenizer.eos_id, loaded.tokenizer.pad_id),
                     (-1, tokenizer.token_to_id("<|im_end|>"),
                      tokenizer.token_to_id("<|endoftext|>")))

    # Through the pipeline: the Qwen3 config fine-tunes it, the markers on reserved tokens.
    pipeline_config = config_files.load_module(
        ROOT / "configs" / "mtrl_qwen3_1_7b.py").get_config()
    pipeline_config.model.checkpoint = str(directory)
    pipeline_config.model.dtype = "float32"
    backbone = pipeline.pretrained_backbone(pipeline_config)
    self.assertEqual(backbone.config.embed_dim, 16)
    tables = grammar.TokenTables.build(backbone.tokenizer)
    for marker, reserved in zip(protocol.MARKERS, protocol_tokenizer.RESERVED_TOKENS["qwen3_1.7b"]):
      self.assertEqual(tables.marker_ids[marker], tokenizer.token_to_id(reserved))
    self.assertEqual(backbone.tokenizer.decode(tables.encode(
        protocol.render_turn("so", ("lr",), [1e-3]))), protocol.render_turn("so", ("lr",), [1e-3]))

    with self.assertRaisesRegex(ValueError, "model_type 'qwen3' is not the llama family"):
      safetensors_import.load_pretrained_dir(directory, config_lib.get_config("smollm2_135m"))
    hf = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(
        {**hf, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}))
    with self.assertRaisesRegex(ValueError, "rope_scaling=.*no biases, RoPE scaling"):
      safetensors_import.load_pretrained_dir(directory, template)
    (directory / "tokenizer.json").unlink()
    with self.assertRaisesRegex(ValueError, "tokenizer.json is missing"):
      safetensors_import.load_pretrained_dir(directory, template)


def _write_byte_bpe(directory: Path) -> tokenizers.Tokenizer:
  """A small byte-level BPE with Qwen's special tokens, saved as directory/tokenizer.json."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Digits(individual_digits=True),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)])
  tok.decoder = tokenizers.decoders.ByteLevel()
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>",
              *protocol_tokenizer.RESERVED_TOKENS["qwen3_1.7b"]]
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=320, special_tokens=specials,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["lr=1.95e-03 bs=6.40e+01 smooth loss=2.6214e+00 the best run"] * 20,
                          trainer)
  tok.save(str(directory / "tokenizer.json"))
  return tok


if __name__ == "__main__":
  absltest.main()
