"""Multi-turn rollout throughput: the on-device loop against a host-driven loop.

Both loops play the same episodes with the same model and experiments, in one process:
  device_loop  `autollm_jax.rollout`: every turn's decode, env step and feedback prefill in
               one jitted function;
  host_loop    what host-side agent frameworks do: each turn is decoded on the device
               (the same jitted `sampler.decode`), then the turns are brought to the host,
               detokenized, stepped through the Python environment (`ReferenceEnv`), and
               the feedback text is tokenized and sent back for a jitted prefill.
Episodes cycle over the train experiments of one task (as GRPO's groups repeat them). The
model has random weights and the vocabulary of a SentencePiece model trained on the prompts.
Tokens/s counts the agent's sampled tokens. A line before the last gives the host loop's time
split into decode, Python env (detokenize, parse, match, render, tokenize) and feedback
prefill. The last line reads
`rollout tokens/s: device_loop=<n> host_loop=<n> ratio=<x>`.

  python bench/rollout_bench.py [--batch=32 --turn_tokens=96 --repeats=3 --model=scratch_1m]
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax import env as env_lib
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax import rollout
from autollm_jax import sampler as sampler_lib
from autollm_jax import sp_tokenizer
from autollm_jax.agents import policy
from autollm_jax.gym import tasks
from autollm_jax.model import config as model_config
from autollm_jax.model import transformer
from autollm_jax.model.kv_cache import init_cache

BATCH = flags.DEFINE_integer("batch", 32, "Episodes played at once.")
TURN_TOKENS = flags.DEFINE_integer("turn_tokens", 96, "Tokens per turn.")
REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions of each loop (best kept).")
MODEL = flags.DEFINE_string("model", "scratch_1m", "Model config (random weights).")
DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                          "Compute dtype (default: the config's; weights stay float32).")


def setup():
  table = tasks.load_task("pretrain_steplaw")
  exps = [e for e in experiments_lib.curate([table], seed=0) if e.split == "train"]
  settings = policy.PolicySettings(max_prompt_rows=4, max_context_fidelities=2,
                                   turn_tokens=TURN_TOKENS.value,
                                   think_tokens=TURN_TOKENS.value // 2, temperature=1.0)
  exps = [policy.prompt_experiment(exps[i % len(exps)], table, settings)
          for i in range(BATCH.value)]
  texts = [protocol.render_prompt(table, e, 4) for e in exps]
  texts.append(protocol.render_turn("the optimum moved", table.param_names, [1e-3, 256.0]) +
               protocol.render_feedback("smooth loss", 2.5, 2.5, 3))
  tok = sp_tokenizer.train_sentencepiece(texts * 3, vocab_size=1024)
  tables = {table.name: table}
  overrides = {"dtype": DTYPE.value} if DTYPE.value else {}
  config = model_config.get_config(MODEL.value, vocab_size=tok.vocab_size, **overrides)
  graphdef, params = nnx.split(transformer.create_model(config, 0))
  return tables, exps, tok, settings, config, graphdef, params


def device_loop(tables, exps, tok, settings, config, graphdef, params):
  env_params = jax.device_put(env_lib.build_env_params(tables, exps, tok))
  prompts = policy.prompt_tokens(tables, exps, tok, settings)
  tokens, mask = rollout.prompt_batch(prompts, tok.pad_id)
  run = rollout.jit_rollout(
      graphdef, config,
      rollout.RolloutConfig(settings.turn_tokens, 1.0, think_tokens=settings.think_tokens),
      rollout.stop_token(tok))
  ids = jnp.arange(len(exps))

  def play(seed):
    out = run(params, env_params, ids, tokens, mask, jax.random.key(seed))
    return float(jnp.sum(out.loss_mask))

  return play


def host_loop(tables, exps, tok, settings, config, graphdef, params):
  token_tables = grammar.TokenTables.build(tok)
  env_params = jax.device_put(env_lib.build_env_params(tables, exps, tok))
  prompts = policy.prompt_tokens(tables, exps, tok, settings)
  tokens, mask = rollout.prompt_batch(prompts, tok.pad_id)
  n = settings.turn_tokens
  max_budget = max(e.budget for e in exps)
  feedback_len = env_params.feedback_len
  length = rollout.buffer_length(tokens.shape[1], max_budget, n, feedback_len)
  sampling = sampler_lib.SamplingParams(n, 1.0, max_free_tokens=settings.think_tokens)
  stop = jnp.array([rollout.stop_token(tok)], jnp.int32)
  grammar_tables = rollout.action_grammar(env_params, jnp.arange(len(exps)))
  start_state = env_params.grammar.free_state[env_params.task]
  prefill = jax.jit(lambda p, t, m, c: sampler_lib.prefill(graphdef, p, t, m, c))
  decode = jax.jit(lambda p, l, pos, c, k: sampler_lib.decode(
      graphdef, p, l, pos, c, k, sampling, stop, tok.pad_id, grammar_tables, start_state))

  @jax.jit
  def stop_finished(logits, active):
    stop_now = jnp.where(jnp.arange(logits.shape[-1]) == stop[0], 0.0, -jnp.inf)
    return jnp.where(active[:, None], logits, stop_now)

  @jax.jit
  def extend(p, chunk, chunk_pos, chunk_mask, cache, last):
    model = nnx.merge(graphdef, p)
    hidden, cache = model.hidden_states(chunk, chunk_pos, chunk_mask, cache)
    return model.logits(jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]), cache

  seconds = {"decode": 0.0, "python_env": 0.0, "feedback_prefill": 0.0}

  def play(seed):
    seconds.update(dict.fromkeys(seconds, 0.0))  # keep the last run's breakdown
    envs = [reference_env.ReferenceEnv(tables[e.task], e) for e in exps]
    cache = init_cache(config, len(exps), length)
    logits, positions, cache = prefill(params, tokens, mask, cache)
    key = jax.random.key(seed)
    sampled = 0
    for turn in range(max_budget):
      active = np.array([not e.done for e in envs])
      start_time = time.perf_counter()
      out = decode(params, stop_finished(logits, jnp.asarray(active)), positions, cache,
                   jax.random.fold_in(key, turn))
      turn_tokens, lengths = jax.device_get((out.tokens, out.lengths))
      seconds["decode"] += time.perf_counter() - start_time
      start_time = time.perf_counter()
      turn_len = np.where(active, lengths, 0)
      chunks, chunk_masks, last = [], [], []
      for b, e in enumerate(envs):
        ids = turn_tokens[b, :turn_len[b]].tolist()
        feedback = e.step(tok.decode(ids))[0] if active[b] else ""
        fb_ids = token_tables.encode(feedback)
        sampled += len(ids)
        row = [ids[-1] if ids else tok.pad_id] + fb_ids
        chunks.append(row + [tok.pad_id] * (feedback_len + 1 - len(row)))
        chunk_masks.append([bool(ids)] * 1 + [True] * len(fb_ids) +
                           [False] * (feedback_len - len(fb_ids)))
        last.append(len(fb_ids))
      start = np.asarray(positions) + np.maximum(turn_len - 1, 0)
      chunk_pos = start[:, None] + np.arange(feedback_len + 1)
      seconds["python_env"] += time.perf_counter() - start_time
      start_time = time.perf_counter()
      logits, cache = extend(params, jnp.asarray(chunks, jnp.int32), jnp.asarray(chunk_pos),
                             jnp.asarray(chunk_masks), out.cache, jnp.asarray(last))
      positions = jnp.asarray(start + 1 + np.asarray(last))
      jax.block_until_ready(logits)
      seconds["feedback_prefill"] += time.perf_counter() - start_time
    return float(sampled)

  play.seconds = seconds
  return play


def timed(play, repeats):
  play(0)  # compile
  best = 0.0
  for r in range(repeats):
    start = time.perf_counter()
    tokens = play(r + 1)
    best = max(best, tokens / (time.perf_counter() - start))
  return best


def main(argv):
  del argv
  setup_args = setup()
  device = timed(device_loop(*setup_args), REPEATS.value)
  host_play = host_loop(*setup_args)
  host = timed(host_play, REPEATS.value)
  print(f"batch={BATCH.value} turn_tokens={TURN_TOKENS.value} model={MODEL.value} "
        f"dtype={setup_args[4].dtype} on {jax.devices()[0].device_kind} jax={jax.__version__}")
  # Where the host loop's time goes (its last run): the device loop can only save the Python
  # env's share and the round trips, so on a CPU, where both decode on the same cores, the
  # ratio is about 1 / (1 - python_env share).
  total = sum(host_play.seconds.values())
  print("host_loop time: " + " ".join(f"{k}={100 * v / total:.1f}%"
                                      for k, v in host_play.seconds.items()))
  print(f"rollout tokens/s: device_loop={device:.0f} host_loop={host:.0f} "
        f"ratio={device / host:.2f}")


if __name__ == "__main__":
  app.run(main)
