"""Multi-turn rollouts on the device: the policy plays whole episodes in one jitted function.

For a batch of episodes (experiment ids, their prompts left-padded), `rollout`:
  1. prefills the prompts into a KV cache;
  2. for each of the largest budget's turns (a `lax.scan`):
     a. decodes the agent's turn (`sampler.decode`) under the action grammar: free reasoning,
        then, after `<execute>`, parameter names forced and numbers constrained, until
        `</execute>` or `turn_tokens` tokens;
     b. steps the environment on the turn's tokens (`env.step`: parse, match, outcome,
        reward, feedback tokens);
     c. writes the turn (loss mask 1) and the feedback (loss mask 0) into the episode's
        token buffer and runs the feedback through the model, extending the cache.
No host round trip happens inside an episode. An episode whose budget is spent emits nothing
more (its logits are set so that it stops at once).

Buffers are [B, L]: the left-padded prompt (P slots), then each turn and its feedback, packed
per row (rows differ in length), then padding. `default_positions(input_mask)` recovers each
token's position, so a forward pass over the buffer reproduces the rollout's context.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from autollm_jax import env as env_lib
from autollm_jax import grammar as grammar_lib
from autollm_jax import protocol
from autollm_jax import sampler as sampler_lib
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import init_cache
from autollm_jax.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """Static rollout settings.

  Attributes:
    turn_tokens: the most tokens of one turn (reasoning and action); a turn that reaches it
      without completing its action does not parse (the trial is lost).
    temperature, top_k, top_p: sampling (temperature 0 is greedy).
    think_tokens: the most reasoning tokens of a turn; then `<execute>` is forced and the
      action follows (None: no limit). With it, every turn completes its action as long as
      turn_tokens leaves room for the longest action.
  """

  turn_tokens: int
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float | None = None
  think_tokens: int | None = None

  def sampling(self) -> sampler_lib.SamplingParams:
    return sampler_lib.SamplingParams(self.turn_tokens, self.temperature, self.top_k,
                                      self.top_p, self.think_tokens)


@flax.struct.dataclass
class Rollout:
  """A batch of played episodes (B episodes, L buffer slots, T = the largest budget).

  Attributes:
    tokens: int32[B, L] prompt, turns and feedback; pad elsewhere.
    input_mask: bool[B, L] real tokens.
    loss_mask: float32[B, L] 1 on the agent's sampled tokens.
    choice_mask: float32[B, L] 1 on the agent's tokens where the grammar allowed more than
      one token: GRPO's loss covers these only, since a forced token (a parameter name, a
      separator) carries no decision, and pushing its probability down after a bad episode
      only moves the policy away from the reference where sampling cannot follow.
    logprobs: float32[B, L] each sampled token's log-probability under the sampling model
      (temperature 1, no grammar), 0 elsewhere.
    rewards: float32[B] the episode's summed environment reward.
    history: int32[B, T] the candidate matched at each trial (-1: did not parse / no trial).
    turn_lengths: int32[B, T] tokens of each turn.
  """

  tokens: Int[Array, "B L"]
  input_mask: Bool[Array, "B L"]
  loss_mask: Float[Array, "B L"]
  choice_mask: Float[Array, "B L"]
  logprobs: Float[Array, "B L"]
  rewards: Float[Array, " B"]
  history: Int[Array, "B T"]
  turn_lengths: Int[Array, "B T"]


def buffer_length(prompt_len: int, max_budget: int, turn_tokens: int, feedback_len: int) -> int:
  """Slots of the token buffer and the cache: the prompt, then per turn its tokens and
  feedback (plus one slot per turn for the turn's last token fed with the feedback)."""
  return prompt_len + max_budget * (turn_tokens + feedback_len + 1)


def check_turn_tokens(config: RolloutConfig, env_params: env_lib.EnvParams) -> None:
  """Raises ValueError when a turn cut off after think_tokens has no room left for the
  longest action of the environment's experiments."""
  action_len = env_params.act_forced.shape[1]
  if (config.think_tokens is not None and
      config.turn_tokens < config.think_tokens + action_len + 1):
    raise ValueError(f"turn_tokens={config.turn_tokens} leaves no room for the action: it must "
                     f"be at least think_tokens + {action_len + 1} (the longest action); raise "
                     "policy.turn_tokens or lower policy.think_tokens")


def sampler_grammar(g: grammar_lib.Grammar, execute_id) -> sampler_lib.Grammar:
  """An action grammar for the sampler: reasoning states are free text, and `<execute>`
  (token `execute_id`) is what a turn's reasoning is cut off with."""
  return sampler_lib.Grammar(
      jax.tree.map(jnp.asarray, g.fsm),
      is_free=jnp.zeros(g.fsm.num_states, bool).at[jnp.asarray(g.free_state)].set(True),
      force_id=jnp.asarray(execute_id, jnp.int32))


def action_grammar(env_params: env_lib.EnvParams,
                   experiment_ids: Int[Array, " B"]) -> sampler_lib.Grammar:
  """The environment's action grammar for the sampler (`sampler_grammar`), each row's values
  restricted to its experiment's candidates'."""
  return sampler_grammar(env_params.grammar, env_params.execute_id).replace(
      live=jnp.asarray(env_params.grammar_live)[experiment_ids])


def _write_rows(buffer: Array, chunk: Array, offset: Int[Array, " B"]) -> Array:
  """buffer[b, offset[b]:offset[b] + n] = chunk[b] for every row b."""
  return jax.vmap(lambda row, c, o: jax.lax.dynamic_update_slice(row, c, (o,)))(
      buffer, chunk, offset)


def rollout(graphdef: nnx.GraphDef, params: nnx.State, model_config: ModelConfig,
            env_params: env_lib.EnvParams, experiment_ids: Int[Array, " B"],
            prompt_tokens: Int[Array, "B P"], prompt_mask: Bool[Array, "B P"], key: Array,
            config: RolloutConfig, stop_id: int) -> Rollout:
  """Plays one episode per row (pure; jit it with `config` and `stop_id` static).

  Args:
    graphdef, params: the policy.
    model_config: its config (the cache's shape).
    env_params: the environment (every experiment that `experiment_ids` refers to).
    experiment_ids: int32[B] the experiment of each episode.
    prompt_tokens, prompt_mask: [B, P] the experiments' prompts, left-padded.
    key: PRNG key for sampling.
    config: the rollout settings.
    stop_id: the `</execute>` token, which ends a turn.
  Returns:
    Rollout.
  """
  batch, prompt_len = prompt_tokens.shape
  turns = env_params.max_budget
  feedback_len = env_params.feedback_len
  n = config.turn_tokens
  length = buffer_length(prompt_len, turns, n, feedback_len)
  pad_id = env_params.pad_id
  model = nnx.merge(graphdef, params)
  grammar = action_grammar(env_params, experiment_ids)
  check_turn_tokens(config, env_params)
  stop_ids = jnp.array([stop_id], jnp.int32)

  cache = init_cache(model_config, batch, length)
  logits, positions, cache = sampler_lib.prefill(graphdef, params, prompt_tokens, prompt_mask,
                                                 cache)
  env_key, key = jax.random.split(key)
  env_state = env_lib.reset(env_params, experiment_ids, env_key)
  pad_to = length - prompt_len
  carry = dict(
      cache=cache, logits=logits, positions=positions, env_state=env_state,
      offset=jnp.full((batch,), prompt_len, jnp.int32),
      tokens=jnp.concatenate([jnp.where(prompt_mask, prompt_tokens, pad_id),
                              jnp.full((batch, pad_to), pad_id, jnp.int32)], axis=1),
      input_mask=jnp.concatenate([prompt_mask, jnp.zeros((batch, pad_to), bool)], axis=1),
      loss_mask=jnp.zeros((batch, length), jnp.float32),
      choice_mask=jnp.zeros((batch, length), jnp.float32),
      logprobs=jnp.zeros((batch, length), jnp.float32),
      rewards=jnp.zeros((batch,), jnp.float32))

  def turn(carry, turn_key):
    active = ~carry["env_state"].done
    # A finished episode is made to emit the stop token at once (and its turn is dropped).
    stop_now = jnp.where(jnp.arange(carry["logits"].shape[-1]) == stop_id, 0.0, -jnp.inf)
    logits = jnp.where(active[:, None], carry["logits"], stop_now)
    out = sampler_lib.decode(
        graphdef, params, logits, carry["positions"], carry["cache"], turn_key,
        config.sampling(), stop_ids, pad_id, grammar,
        env_lib.grammar_start(env_params, carry["env_state"]))
    turn_len = jnp.where(active, out.lengths, 0)
    env_state, feedback, reward, _ = env_lib.step(env_params, carry["env_state"], out.tokens)
    fb_len = jnp.where(active, feedback.length, 0)

    in_turn = jnp.arange(n) < turn_len[:, None]
    offset = carry["offset"]
    tokens = _write_rows(carry["tokens"], jnp.where(in_turn, out.tokens, pad_id), offset)
    input_mask = _write_rows(carry["input_mask"], in_turn, offset)
    loss_mask = _write_rows(carry["loss_mask"], in_turn.astype(jnp.float32), offset)
    choice_mask = _write_rows(carry["choice_mask"],
                              (in_turn & ~out.forced).astype(jnp.float32), offset)
    logprobs = _write_rows(carry["logprobs"], jnp.where(in_turn, out.logprobs, 0.0), offset)
    offset = offset + turn_len
    in_fb = jnp.arange(feedback_len) < fb_len[:, None]
    tokens = _write_rows(tokens, jnp.where(in_fb, feedback.tokens, pad_id), offset)
    input_mask = _write_rows(input_mask, in_fb, offset)
    offset = offset + fb_len

    # The turn's last token was sampled but not yet fed: feed it with the feedback.
    last = jnp.take_along_axis(out.tokens, jnp.maximum(turn_len - 1, 0)[:, None], axis=1)
    chunk = jnp.concatenate([last, feedback.tokens], axis=1)
    chunk_mask = jnp.concatenate([(turn_len > 0)[:, None], in_fb], axis=1)
    start = carry["positions"] + jnp.maximum(turn_len - 1, 0)
    chunk_pos = start[:, None] + jnp.arange(feedback_len + 1)
    hidden, cache = model.hidden_states(chunk, chunk_pos, chunk_mask, out.cache)
    last_hidden = jnp.take_along_axis(hidden, fb_len[:, None, None], axis=1)[:, 0]
    next_logits = model.logits(last_hidden)
    positions = jnp.where(active, start + 1 + fb_len, carry["positions"])
    new = dict(cache=cache, logits=next_logits, positions=positions, env_state=env_state,
               offset=offset, tokens=tokens, input_mask=input_mask, loss_mask=loss_mask,
               choice_mask=choice_mask, logprobs=logprobs, rewards=carry["rewards"] + reward)
    return new, turn_len

  carry, turn_lengths = jax.lax.scan(turn, carry, jax.random.split(key, turns))
  return Rollout(tokens=carry["tokens"], input_mask=carry["input_mask"],
                 loss_mask=carry["loss_mask"], choice_mask=carry["choice_mask"],
                 logprobs=carry["logprobs"],
                 rewards=carry["rewards"], history=carry["env_state"].history,
                 turn_lengths=turn_lengths.T)


# Prompt batches are padded to a multiple of this many slots: each new prompt length would
# compile the rollout again (3.3 s for scratch_1m on a 2-core CPU), and GRPO's batches, a few
# experiments each, rarely repeat the longest prompt's length.
PROMPT_LENGTH_MULTIPLE = 64


def prompt_batch(prompts: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded [B, P] prompt tokens and mask, P a multiple of PROMPT_LENGTH_MULTIPLE (see
  `sampler.left_pad`)."""
  return sampler_lib.left_pad(prompts, pad_id, PROMPT_LENGTH_MULTIPLE)


def stop_token(tokenizer: Tokenizer) -> int:
  """The token that ends an agent's turn."""
  return tokenizer.piece_to_id(protocol.EXECUTE_END)


_jitted_rollout = jax.jit(rollout,
                          static_argnames=("graphdef", "model_config", "config", "stop_id"))


def jit_rollout(graphdef: nnx.GraphDef, model_config: ModelConfig, config: RolloutConfig,
                stop_id: int):
  """`rollout` jitted for one model graph and rollout config:
  f(params, env_params, experiment_ids, prompt_tokens, prompt_mask, key) -> Rollout.

  Every f with equal static arguments shares one compilation cache: the pipeline's GRPO
  stages and each policy it evaluates play the same graph (a compilation costs 3.3 s for
  scratch_1m on a 2-core CPU, minutes for a large model).
  """
  def run(params, env_params, experiment_ids, prompt_tokens, prompt_mask, key):
    return _jitted_rollout(graphdef=graphdef, params=params, model_config=model_config,
                           env_params=env_params, experiment_ids=experiment_ids,
                           prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, key=key,
                           config=config, stop_id=stop_id)

  return run
