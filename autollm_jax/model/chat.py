"""Chat templates of the pretrained instruct models (one user turn, generation prompt)."""

from __future__ import annotations

from autollm_jax.tokenizer import Tokenizer

_SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def render_user_turn(family: str, user_text: str) -> str:
  """The prompt text of one user message followed by the assistant's turn opener.

  Args:
    family: the model config's family ("gemma3", "llama" for SmolLM2, "qwen3").
    user_text: the user's message.
  """
  if family == "gemma3":
    return f"<start_of_turn>user\n{user_text}<end_of_turn>\n<start_of_turn>model\n"
  if family == "llama":
    return (f"<|im_start|>system\n{_SMOLLM_SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user_text}<|im_end|>\n<|im_start|>assistant\n")
  if family == "qwen3":
    return f"<|im_start|>user\n{user_text}<|im_end|>\n<|im_start|>assistant\n"
  raise ValueError(f"no chat template for family {family!r}")


def stop_ids(family: str, tokenizer: Tokenizer) -> list[int]:
  """Token ids that end a reply: EOS and the end-of-turn marker."""
  marker = {"gemma3": "<end_of_turn>", "llama": "<|im_end|>", "qwen3": "<|im_end|>"}[family]
  return sorted({tokenizer.eos_id, tokenizer.piece_to_id(marker)})
