"""The policies of grpo_own: tiny decoders of several sizes, their fixed-length sampler, their
held-out accuracy, and the supervised warm start that GRPO begins from.

Every function is pure in (graphdef, params), so a population of policies is a `jax.vmap`
away. Sampling takes the temperature as an array, so it can differ across a population.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from autollm_jax.grpo_own import arithmetic
from autollm_jax.model import transformer
from autollm_jax.model.config import ModelConfig
from autollm_jax.training import grpo
from autollm_jax.training import losses
from autollm_jax.training import optimizer as optimizer_lib


def _policy(name: str, dim: int, layers: int, heads: int, mlp: int) -> ModelConfig:
  return ModelConfig(name=name, family="qwen3", vocab_size=arithmetic.VOCAB_SIZE, embed_dim=dim,
                     num_layers=layers, num_heads=heads, num_kv_heads=heads,
                     head_dim=dim // heads, mlp_dim=mlp, qk_norm=True,
                     max_seq_len=arithmetic.SEQ_LEN)


# The fidelities, cheapest first: about 11K, 37K and 112K parameters, sized so that the whole
# sweep runs on two CPU cores (the smallest that reaches a modest accuracy is the first).
POLICIES: dict[str, ModelConfig] = {
    "xs": _policy("grpo_own_xs", 32, 1, 2, 64),
    "s": _policy("grpo_own_s", 40, 2, 4, 96),
    "m": _policy("grpo_own_m", 48, 3, 4, 192),
}


def sample_answers(graphdef: nnx.GraphDef, params: nnx.State,
                   prompts: Int[Array, "B P"], key: Array, temperature: Float[Array, ""]
                   ) -> tuple[Int[Array, "B A"], Float[Array, "B A"]]:
  """Answers of ANSWER_LEN tokens after each prompt, one token at a time.

  Each step reruns the model over the prefix (sequences are a dozen tokens, so a KV cache
  would save little).

  Args:
    graphdef, params: the split policy.
    prompts: [B, PROMPT_LEN] problem tokens.
    key: PRNG key.
    temperature: [] softmax temperature; 0 decodes greedily.
  Returns:
    ([B, ANSWER_LEN] sampled ids, [B, ANSWER_LEN] their log-probabilities under the policy's
    own, temperature-1, distribution).
  """
  tokens, logps = prompts, []
  for step in range(arithmetic.ANSWER_LEN):
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    logits, _ = transformer.forward(graphdef, params, tokens, positions)
    logp = jax.nn.log_softmax(logits[:, -1], axis=-1)
    sampled = jax.random.categorical(jax.random.fold_in(key, step),
                                     logp / jnp.maximum(temperature, 1e-6), axis=-1)
    token = jnp.where(temperature > 0, sampled, jnp.argmax(logp, axis=-1)).astype(jnp.int32)
    logps.append(jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0])
    tokens = jnp.concatenate([tokens, token[:, None]], axis=1)
  return tokens[:, arithmetic.PROMPT_LEN:], jnp.stack(logps, axis=1)


def accuracy(graphdef: nnx.GraphDef, params: nnx.State, problems: Int[Array, "n L"],
             temperature: float = 0.0, samples: int = 1, key: Array | None = None
             ) -> Float[Array, ""]:
  """Fraction of answers to `problems` ([n, SEQ_LEN] problem and answer tokens) that are
  exact: greedy answers (temperature 0), or `samples` answers a problem drawn at
  `temperature` with `key` (pass@1)."""
  problems = jnp.tile(problems, (samples, 1))
  answers, _ = sample_answers(graphdef, params, problems[:, :arithmetic.PROMPT_LEN],
                              jax.random.key(0) if key is None else key,
                              jnp.asarray(temperature, jnp.float32))
  return arithmetic.rewards(answers, problems[:, arithmetic.PROMPT_LEN:]).mean()


def answer_log_probs(graphdef: nnx.GraphDef, params: nnx.State, sequences: Int[Array, "B L"]
                     ) -> Float[Array, "B L"]:
  """float32[B, L] log p(token | prefix) of every token (column 0 is 0); the sequences have
  no padding."""
  return grpo.sequence_log_probs(graphdef, params, sequences, jnp.ones(sequences.shape, bool))


def answer_mask(batch: int) -> Float[Array, "B L"]:
  """float32[B, SEQ_LEN]: 1 on answer tokens, 0 on the prompt."""
  return jnp.broadcast_to(jnp.arange(arithmetic.SEQ_LEN) >= arithmetic.PROMPT_LEN,
                          (batch, arithmetic.SEQ_LEN)).astype(jnp.float32)


def warm_start(config: ModelConfig, train: np.ndarray, test: np.ndarray, *, seed: int,
               target_accuracy: float, max_steps: int, batch_size: int = 128,
               learning_rate: float = 3e-3, check_every: int = 100
               ) -> tuple[nnx.GraphDef, nnx.State, dict]:
  """Supervised training on `train` until greedy held-out accuracy reaches `target_accuracy`.

  Stopping at a modest accuracy leaves GRPO room to improve (or to spoil) the policy.
  Deterministic given `seed`.

  Args:
    config: the policy's shape.
    train, test: int32[n, SEQ_LEN] problems with answers (`arithmetic.problems`).
    seed: initialisation and batch-order seed.
    target_accuracy: stop at the first check whose held-out accuracy is at least this.
    max_steps: stop here in any case (a multiple of `check_every`).
    batch_size, learning_rate, check_every: AdamW settings and how often accuracy is checked.
  Returns:
    (graphdef, params, {"steps", "accuracy", "n_params"}).
  """
  graphdef, params = nnx.split(transformer.create_model(config, seed))
  tx = optimizer_lib.make_optimizer(optimizer_lib.default_optimizer_config(
      learning_rate=learning_rate, warmup_steps=check_every, total_steps=max_steps,
      weight_decay=0.0))
  train_d, test_d = jnp.asarray(train), jnp.asarray(test)
  mask = answer_mask(batch_size)

  def step(carry, key):
    params, opt_state = carry
    batch = train_d[jax.random.randint(key, (batch_size,), 0, train_d.shape[0])]
    grads = jax.grad(lambda p: -losses.masked_mean(answer_log_probs(graphdef, p, batch),
                                                   mask))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  @jax.jit
  def chunk(params, opt_state, key):
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                          jax.random.split(key, check_every))
    return params, opt_state, accuracy(graphdef, params, test_d)

  opt_state = tx.init(params)
  key = jax.random.key(seed)
  steps = 0
  while True:
    params, opt_state, acc = chunk(params, opt_state, jax.random.fold_in(key, steps))
    steps, acc = steps + check_every, float(acc)
    if acc >= target_accuracy or steps >= max_steps:
      break
  return graphdef, params, {"steps": steps, "accuracy": acc,
                            "n_params": transformer.param_count(params)}
