"""Env steps per second: the jitted device env against the Python reference env.

Both run the same episodes (the gym's curated experiments, cycled over the batch) with the
same random turns, in one process: rounds that each time some device episode-batches and one
pass of the Python env, so that both see the same load on a shared machine. Every episode is
reset and stepped for its whole budget; steps of finished episodes are not counted. The turns
are on the device (one array per trial) and the Python env's strings are made before timing.
Prints the rates by CPU time (`time.process_time`) and, last, by wall time:
  env steps/s: device=<n> python=<n> ratio=<x> batch=<b>

  python bench/env_bench.py [--batch=1024] [--split=test] [--reps=20] [--rounds=3]
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax import env as env_lib
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax import sp_tokenizer
from autollm_jax.gym import tasks

_BATCH = flags.DEFINE_integer("batch", 1024, "episodes stepped together")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "train", "all"], "which experiments")
_REPS = flags.DEFINE_integer("reps", 20, "timed device episode-batches (after a warm-up)")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "rounds of device episode-batches and a Python pass")
_SEED = flags.DEFINE_integer("seed", 0, "seeds the turns")
_VOCAB = flags.DEFINE_integer("vocab_size", 2048, "SentencePiece vocabulary size")
_DATA_DIR = flags.DEFINE_string("gym_data_dir", None, "the gym data folder")


def _turn(rng: np.random.Generator, table, experiment) -> str:
  """Reasoning and an action with values drawn around the candidates' ranges."""
  cands = table.configs[experiment.candidate_rows]
  values = []
  for i, p in enumerate(table.params):
    lo, hi = cands[:, i].min(), cands[:, i].max()
    if p.scale == "log":
      values.append(float(np.exp(rng.uniform(np.log(lo) - 0.5, np.log(hi) + 0.5))))
    else:
      values.append(float(abs(rng.uniform(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo)))))
  return protocol.render_turn("between the two cheap optima", table.param_names, values)


def main(argv):
  del argv
  tables = {t.name: t for t in tasks.load_all(_DATA_DIR.value)}
  experiments = [e for e in experiments_lib.curate(list(tables.values()))
                 if _SPLIT.value in ("all", e.split)]
  rng = np.random.default_rng(_SEED.value)
  b = _BATCH.value
  ids = np.arange(b) % len(experiments)
  refs = [reference_env.ReferenceEnv(tables[experiments[i].task], experiments[i]) for i in ids]
  t_max = max(e.budget for e in experiments)
  turns = [[_turn(rng, r.table, r.experiment) for r in refs] for _ in range(t_max)]
  # The tokenizer of a model trained from scratch on this kind of text.
  corpus = ([r.prompt() for r in refs[:len(experiments)]] +
            [t for row in turns for t in row[:4 * len(experiments)]])
  tokenizer = sp_tokenizer.train_sentencepiece(corpus, vocab_size=_VOCAB.value)
  tables_tok = grammar.TokenTables.build(tokenizer)
  encoded = [[tables_tok.encode(t) for t in row] for row in turns]
  length = max(len(i) for row in encoded for i in row)
  tokens = np.full((t_max, b, length), tokenizer.pad_id, np.int32)
  for t, row in enumerate(encoded):
    for j, i in enumerate(row):
      tokens[t, j, :len(i)] = i
  params = jax.device_put(env_lib.build_env_params(tables, experiments, tables_tok))
  step_tokens = [jax.device_put(row) for row in tokens]
  ids_device = jnp.asarray(ids)
  reset = jax.jit(env_lib.reset)
  step = jax.jit(env_lib.step, donate_argnums=1)
  live_steps = int(sum(experiments[i].budget for i in ids))

  def device_batches(keys) -> None:
    for key in keys:
      state = reset(params, ids_device, key)
      for t in range(t_max):
        state, feedback, reward, _ = step(params, state, step_tokens[t])
    jax.block_until_ready((state, feedback, reward))

  def python_pass() -> None:
    for r in refs:
      r.reset()
    for t in range(t_max):
      for r, turn in zip(refs, turns[t]):
        if not r.done:
          r.step(turn)

  keys = list(jax.random.split(jax.random.key(_SEED.value), _REPS.value))
  device_batches(keys[:1])  # compile
  times = {"device": np.zeros(2), "python": np.zeros(2)}
  for i in range(_ROUNDS.value):
    for name, run in (("device", lambda: device_batches(keys[i::_ROUNDS.value])),
                      ("python", python_pass)):
      start = np.array([time.process_time(), time.perf_counter()])
      run()
      times[name] += np.array([time.process_time(), time.perf_counter()]) - start
  device_rate = _REPS.value * live_steps / times["device"]
  python_rate = _ROUNDS.value * live_steps / times["python"]
  print(f"experiments: {len(experiments)} ({_SPLIT.value}), vocab {tokenizer.vocab_size}, "
        f"turn tokens {length}, device {jax.devices()[0].platform}")
  print(f"env steps/s by CPU time: device={device_rate[0]:.0f} python={python_rate[0]:.0f} "
        f"ratio={device_rate[0] / python_rate[0]:.1f}")
  print(f"env steps/s: device={device_rate[1]:.0f} python={python_rate[1]:.0f} "
        f"ratio={device_rate[1] / python_rate[1]:.1f} batch={b}")


if __name__ == "__main__":
  app.run(main)
