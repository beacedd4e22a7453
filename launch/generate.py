"""Generate a continuation with a pretrained (GGUF) model.

  python launch/generate.py --model=gemma3_270m --prompt="The learning rate is" \
      --max_new_tokens=8
  python launch/generate.py --model=smollm2_135m --chat --prompt="What is the capital of France?"
  python launch/generate.py --checkpoint=/tmp/run/ckpt --prompt="..."   # a trained model
"""

from __future__ import annotations

import time

import jax
from absl import app, flags

from autollm_jax import checkpoint, memory, sampler as sampler_lib, sharding
from autollm_jax.model import chat, gguf_import, transformer
from autollm_jax.model import config as config_lib
from autollm_jax.tokenizer import tokenizer_from_blob

_MODEL = flags.DEFINE_enum("model", "gemma3_270m", sorted(gguf_import.PRETRAINED_GGUF),
                           "Pretrained model to load.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Orbax checkpoint directory to load instead of --model.")
_PROMPT = flags.DEFINE_string("prompt", "The learning rate is", "Text to continue.")
_CHAT = flags.DEFINE_bool("chat", False, "Wrap the prompt in the model's chat template.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 for greedy decoding.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Sample among the k most likely tokens.")
_TOP_P = flags.DEFINE_float("top_p", None, "Nucleus sampling mass.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Copies of the prompt to sample at once.")


def _stop_ids(family: str, tok) -> list[int]:
  try:
    return chat.stop_ids(family, tok)
  except KeyError:  # a tokenizer without the family's end-of-turn marker
    return [tok.eos_id]


def main(argv):
  del argv
  sharding.initialize_distributed()
  manager = checkpoint.CheckpointManager(_CHECKPOINT.value) if _CHECKPOINT.value else None
  config = manager.read_meta()[1] if manager else config_lib.get_config(_MODEL.value)
  text = chat.render_user_turn(config.family, _PROMPT.value) if _CHAT.value else _PROMPT.value
  # Before allocating: a prompt has at most one token per byte, plus BOS.
  print(memory.estimate(config, batch_size=_BATCH.value,
                        seq_len=len(text.encode()) + 1 + _MAX_NEW.value).summary(), flush=True)
  if manager:
    restored = manager.restore_latest()
    if restored.tokenizer_blob is None:
      raise app.UsageError(f"{_CHECKPOINT.value} has no tokenizer; save one with the checkpoint")
    params = restored.params
    tok = tokenizer_from_blob(restored.tokenizer_blob)
  else:
    pretrained = gguf_import.load_pretrained(_MODEL.value)
    params, tok = pretrained.params, pretrained.tokenizer
  ids = ([tok.bos_id] if tok.bos_id >= 0 and config.family == "gemma3" else []) + tok.encode(text)
  graphdef, _ = transformer.abstract_model(config)
  sampler = sampler_lib.Sampler(graphdef, config, pad_id=tok.pad_id)
  sampling = sampler_lib.SamplingParams(max_new_tokens=_MAX_NEW.value,
                                        temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                                        top_p=_TOP_P.value)
  start = time.time()
  out = sampler(params, [ids] * _BATCH.value, sampling,
                key=jax.random.key(_SEED.value), stop_ids=_stop_ids(config.family, tok))
  for row in range(_BATCH.value):
    n = int(out.lengths[row])
    print(tok.decode(out.tokens[row, :n].tolist()))
  print(f"({time.time() - start:.1f}s including compilation)")


if __name__ == "__main__":
  app.run(main)
