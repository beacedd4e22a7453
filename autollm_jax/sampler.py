"""Batched sampling: jitted prefill, then a `lax.while_loop` decode over a donated KV cache.

Prompts are left-padded to one length so the whole batch writes the same cache slot each step.
Sampling supports greedy (temperature 0), temperature, top-k, top-p, stop tokens and grammar
constraints: a finite-state machine over tokens (`autollm_jax.token_fsm`), whose state is
carried per sequence inside the loop, so constrained decoding never leaves the device.

`prefill` and `decode` are pure and can be called inside a larger jitted function (the
multi-turn rollout); `Sampler` wraps them in `jax.jit` with donation for direct use.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from autollm_jax import token_fsm
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import KVCache, init_cache
from autollm_jax.model.transformer import default_positions


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """Static sampling settings.

  Attributes:
    max_new_tokens: tokens generated per sequence (N), stop tokens included.
    temperature: 0 for greedy, else the softmax temperature.
    top_k: keep the k most likely tokens (None: all).
    top_p: keep the smallest set of tokens with this much probability (None or 1: all).
    max_free_tokens: with a grammar that marks free-text states, the most tokens a sequence
      may write in them; then the grammar's force token is emitted (e.g. an agent's
      reasoning is cut off and its action begins). None: no limit.
  """
  max_new_tokens: int
  temperature: float = 0.0
  top_k: int | None = None
  top_p: float | None = None
  max_free_tokens: int | None = None


@flax.struct.dataclass
class Grammar:
  """A token-level finite-state machine constraining what may be sampled.

  Attributes:
    fsm: the machine's tables; each token is drawn from the tokens its state allows.
    is_free: optional [S] bool, the free-text states counted against
      SamplingParams.max_free_tokens.
    force_id: optional [] int32, the token emitted once a sequence's free text is used up.
    live: optional [B, S] bool, the states each sequence may enter: a token leading to a state
      that is not live is not allowed (e.g. one experiment's values among its task's).
  """
  fsm: token_fsm.TokenFSM
  is_free: Bool[Array, "S"] | None = None
  force_id: Int[Array, ""] | None = None
  live: Bool[Array, "B S"] | None = None


@flax.struct.dataclass
class SampleOutput:
  """What `decode` returns.

  Attributes:
    tokens: [B, N] sampled ids; after a sequence's stop token, pad ids.
    logprobs: [B, N] log-probability of each sampled token under the model's own
      distribution (temperature 1, no top-k/top-p/grammar), 0 after the stop.
    forced: [B, N] True where the grammar allowed one token only (a parameter name, a
      separator, `<execute>` after the reasoning's limit): the sequence had no choice there.
    lengths: [B] generated tokens per sequence, its stop token included.
    done: [B] whether the sequence emitted a stop token.
    grammar_state: [B] the FSM state after the last token.
    cache: the KV cache after the prompt and every generated token except each row's last
      one (its stop token, or token N), which a caller that continues the sequence feeds
      next; slots of a row after its stop are masked out. cache.index counts slots used.
  """
  tokens: Int[Array, "B N"]
  logprobs: Float[Array, "B N"]
  forced: Bool[Array, "B N"]
  lengths: Int[Array, "B"]
  done: Bool[Array, "B"]
  grammar_state: Int[Array, "B"]
  cache: KVCache


@flax.struct.dataclass
class _LoopState:
  step: Int[Array, ""]
  last_token: Int[Array, "B"]
  last_real: Bool[Array, "B"]
  positions: Int[Array, "B"]
  tokens: Int[Array, "B N"]
  logprobs: Float[Array, "B N"]
  forced: Bool[Array, "B N"]
  done: Bool[Array, "B"]
  grammar_state: Int[Array, "B"]
  free_tokens: Int[Array, "B"]
  cache: KVCache


def sample_logits(logits: Float[Array, "B V"], key: Array, params: SamplingParams
                  ) -> Int[Array, "B"]:
  """One token per row from (already masked) logits under `params`."""
  if params.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / params.temperature
  if params.top_k is not None:
    kth = jax.lax.top_k(logits, params.top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if params.top_p is not None and params.top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The smallest logit still kept: tokens whose preceding mass is below top_p stay.
    cutoff = jnp.min(jnp.where(mass_before < params.top_p, sorted_logits, jnp.inf), axis=-1,
                     keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def prefill(graphdef: nnx.GraphDef, params: nnx.State, tokens: Int[Array, "B P"],
            input_mask: Bool[Array, "B P"], cache: KVCache
            ) -> tuple[Float[Array, "B V"], Int[Array, "B"], KVCache]:
  """Run left-padded prompts through the model, filling the cache.

  Args:
    graphdef, params: the split model.
    tokens: [B, P] prompts, left-padded.
    input_mask: [B, P] True on real tokens.
    cache: a cache with at least P free slots from cache.index.
  Returns:
    ([B, V] float32 logits for the next token, [B] next positions, the updated cache).
  """
  model = nnx.merge(graphdef, params)
  positions = default_positions(input_mask)
  hidden, cache = model.hidden_states(tokens, positions, input_mask, cache)
  return model.logits(hidden[:, -1]), positions[:, -1] + 1, cache


def decode(graphdef: nnx.GraphDef, params: nnx.State, logits: Float[Array, "B V"],
           positions: Int[Array, "B"], cache: KVCache, key: Array,
           sampling: SamplingParams, stop_ids: Int[Array, "n"], pad_id: int,
           grammar: Grammar | None = None, grammar_state: Int[Array, "B"] | None = None
           ) -> SampleOutput:
  """Sample up to `sampling.max_new_tokens` tokens after `prefill`.

  Args:
    graphdef, params: the split model.
    logits: [B, V] next-token logits from `prefill`.
    positions: [B] position of the next token.
    cache: the cache after `prefill`, with max_new_tokens - 1 free slots.
    key: PRNG key.
    sampling: static sampling settings.
    stop_ids: [n] ids that end a sequence (n may be 0).
    pad_id: id written after a sequence stops.
    grammar: optional FSM; with it, each token is drawn from the tokens its state allows.
    grammar_state: [B] initial FSM states (default 0).
  Returns:
    SampleOutput.
  """
  model = nnx.merge(graphdef, params)
  batch, steps = logits.shape[0], sampling.max_new_tokens
  if grammar_state is None:
    grammar_state = jnp.zeros((batch,), jnp.int32)

  limit_free = grammar is not None and sampling.max_free_tokens is not None
  if limit_free and (grammar.is_free is None or grammar.force_id is None):
    raise ValueError("max_free_tokens needs a grammar with is_free and force_id")

  def pick(logits, state: _LoopState) -> _LoopState:
    masked = logits
    free_tokens = state.free_tokens
    forced = jnp.zeros(logits.shape[:1], bool)
    if grammar is not None:
      allowed = token_fsm.allowed_tokens(grammar.fsm, state.grammar_state, grammar.live)
      if limit_free:
        in_free = grammar.is_free[state.grammar_state]
        used_up = in_free & (free_tokens >= sampling.max_free_tokens)
        allowed = jnp.where(used_up[:, None],
                            jnp.arange(logits.shape[-1]) == grammar.force_id, allowed)
        free_tokens = free_tokens + (in_free & ~state.done)
      masked = jnp.where(allowed, logits, -jnp.inf)
      forced = jnp.sum(allowed, axis=-1) == 1
    token = sample_logits(masked, jax.random.fold_in(key, state.step), sampling)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), token[:, None], -1)[:, 0]
    token = jnp.where(state.done, pad_id, token)
    logprob = jnp.where(state.done, 0.0, logprob)
    gstate = state.grammar_state
    if grammar is not None:
      gstate = jnp.where(state.done, gstate, token_fsm.advance(grammar.fsm, gstate, token))
    done = state.done | jnp.isin(token, stop_ids)
    # A row's last token (its stop token) is never fed, whatever the other rows do.
    return state.replace(
        last_token=token, last_real=~done,
        tokens=state.tokens.at[:, state.step].set(token),
        logprobs=state.logprobs.at[:, state.step].set(logprob),
        forced=state.forced.at[:, state.step].set(forced & ~state.done),
        done=done, grammar_state=gstate, free_tokens=free_tokens, step=state.step + 1)

  def body(state: _LoopState) -> _LoopState:
    # Rows that stopped feed a masked token, which no later query can see.
    logits, cache = model(state.last_token[:, None], state.positions[:, None],
                          state.last_real[:, None], state.cache)
    state = state.replace(cache=cache, positions=state.positions + 1)
    return pick(logits[:, 0], state)

  def cond(state: _LoopState) -> Array:
    return (state.step < steps) & ~jnp.all(state.done)

  state = _LoopState(
      step=jnp.zeros((), jnp.int32), last_token=jnp.zeros((batch,), jnp.int32),
      last_real=jnp.zeros((batch,), bool),
      positions=positions, tokens=jnp.full((batch, steps), pad_id, jnp.int32),
      logprobs=jnp.zeros((batch, steps), jnp.float32), forced=jnp.zeros((batch, steps), bool),
      done=jnp.zeros((batch,), bool), grammar_state=grammar_state.astype(jnp.int32),
      free_tokens=jnp.zeros((batch,), jnp.int32), cache=cache)
  state = jax.lax.while_loop(cond, body, pick(logits, state))
  first_stop = jnp.argmax(jnp.isin(state.tokens, stop_ids), axis=1)
  lengths = jnp.where(state.done, first_stop + 1, state.step)
  return SampleOutput(tokens=state.tokens, logprobs=state.logprobs, forced=state.forced,
                      lengths=lengths, done=state.done, grammar_state=state.grammar_state,
                      cache=state.cache)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, multiple: int = 1
             ) -> tuple[np.ndarray, np.ndarray]:
  """([B, P] int32 tokens, [B, P] bool mask) of prompts left-padded to the longest, rounded up
  to a multiple of `multiple`."""
  length = -(-max(len(p) for p in prompts) // multiple) * multiple
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  mask = np.zeros((len(prompts), length), bool)
  for i, p in enumerate(prompts):
    if len(p):
      tokens[i, length - len(p):] = p
      mask[i, length - len(p):] = True
  return tokens, mask


class Sampler:
  """Jitted prefill + decode for one model graph.

  Example:
    sampler = Sampler(graphdef, config, pad_id=tok.pad_id)
    out = sampler(params, [tok.encode("Hello")], SamplingParams(max_new_tokens=8),
                  stop_ids=[tok.eos_id])
  """

  def __init__(self, graphdef: nnx.GraphDef, config: ModelConfig, pad_id: int,
               cache_sharding: KVCache | None = None):
    """Args:
      graphdef: from `nnx.split(model)`.
      config: the model config (cache shape).
      pad_id: id written after a sequence stops and used for left padding.
      cache_sharding: optional KVCache of NamedShardings (see `sharding.cache_sharding`)
        to allocate the cache sharded.
    """
    self.graphdef, self.config, self.pad_id = graphdef, config, pad_id
    self._cache_sharding = cache_sharding
    # `prefill` / `decode` without the graphdef argument, jitted, the cache donated.
    self.prefill = jax.jit(functools.partial(prefill, graphdef), donate_argnums=(3,))
    self.decode = jax.jit(functools.partial(decode, graphdef),
                          static_argnames=("sampling", "pad_id"), donate_argnums=(3,))

  def init_cache(self, batch_size: int, length: int) -> KVCache:
    """An empty cache (sharded when the sampler was given `cache_sharding`)."""
    make = functools.partial(init_cache, self.config, batch_size, length)
    if self._cache_sharding is None:
      return make()
    return jax.jit(make, out_shardings=self._cache_sharding)()

  def __call__(self, params: nnx.State, prompts: Sequence[Sequence[int]],
               sampling: SamplingParams, *, key: Array | None = None,
               stop_ids: Sequence[int] = (), grammar: Grammar | None = None,
               grammar_state: Array | None = None, cache_length: int | None = None
               ) -> SampleOutput:
    """Sample continuations of `prompts` (lists of token ids, BOS included if wanted).

    Args:
      params: model parameters (sharded or not).
      prompts: B token lists.
      sampling: static settings (max_new_tokens, temperature, top_k, top_p).
      key: PRNG key (default key 0).
      stop_ids: tokens that end a sequence.
      grammar, grammar_state: optional FSM constraint and its initial states.
      cache_length: cache slots (default prompt length + max_new_tokens).
    Returns:
      SampleOutput; tokens[b, :lengths[b]] is sequence b's continuation.
    """
    tokens, mask = left_pad(prompts, self.pad_id)
    length = cache_length or tokens.shape[1] + sampling.max_new_tokens
    if length < tokens.shape[1] + sampling.max_new_tokens - 1:
      raise ValueError(f"cache_length={length} cannot hold {tokens.shape[1]} prompt tokens and "
                       f"{sampling.max_new_tokens} new ones")
    cache = self.init_cache(len(prompts), length)
    logits, positions, cache = self.prefill(params, jnp.asarray(tokens), jnp.asarray(mask),
                                            cache)
    return self.decode(params, logits, positions, cache,
                       jax.random.key(0) if key is None else key, sampling=sampling,
                       stop_ids=jnp.asarray(stop_ids, jnp.int32).reshape(-1),
                       pad_id=self.pad_id, grammar=grammar, grammar_state=grammar_state)
