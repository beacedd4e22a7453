"""Env steps per second: the jitted device env against the Python reference env.

Both run the same episodes (the gym's curated experiments, cycled over the batch) with the
same random turns, in one process: rounds that each time some device episode-batches and one
pass of the Python env, so that both see the same load on a shared machine. The experiments
are grouped by task (--by_task, the default), each group a batch of --batch episodes with
EnvParams of its own, so that each batch pays only for its own task's shapes (parameters,
candidates, action and turn length); --noby_task plays every task in one batch. The Python
env plays the first --python_batch episodes of each group (rounded up to whole cycles of its
experiments) and the device rows beyond them repeat their turns, so that a large device batch
needs no longer Python pass. Every episode is reset and stepped for its whole budget, in one
jitted function per batch (reset, then a `lax.scan` over the turns, every turn's feedback and
reward returned), as a jitted rollout runs the env; steps of finished episodes are not
counted. The turns are on the device ([T, B, L]) and the Python env's strings are made before
timing.
Prints the rates by CPU time (`time.process_time`) and, last, by wall time:
  env steps/s: device=<n> python=<n> ratio=<x> batch=<b> python_batch=<p>

  python bench/env_bench.py [--batch=1024] [--python_batch=1024] [--split=test] [--reps=20]
"""

from __future__ import annotations

import dataclasses
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
from autollm_jax.experiments import Experiment
from autollm_jax.gym import tasks

_BATCH = flags.DEFINE_integer("batch", 1024, "episodes stepped together")
_PYTHON_BATCH = flags.DEFINE_integer("python_batch", 1024,
                                     "episodes the Python env plays per batch (the device "
                                     "rows beyond them repeat their turns)")
_BY_TASK = flags.DEFINE_bool("by_task", True, "one batch per task (else one for all tasks)")
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


@dataclasses.dataclass
class _Batch:
  """One batch of episodes: its experiments, the Python env's episodes and their turns."""

  experiments: list[Experiment]
  ids: np.ndarray  # int[B] each device episode's experiment
  refs: list[reference_env.ReferenceEnv]  # the Python env's episodes, device rows 0..pool-1
  turns: list[list[str]]  # [T][pool] the turns of the Python env's episodes

  def live_steps(self, rows: int) -> int:
    """Steps of unfinished episodes among the first `rows` episodes."""
    return int(sum(self.experiments[i].budget for i in self.ids[:rows]))


def _make_batch(tables, experiments: list[Experiment], b: int, python_batch: int,
                rng: np.random.Generator) -> _Batch:
  """`b` episodes cycling over `experiments`, the Python env's first `python_batch` of them."""
  ids = np.arange(b) % len(experiments)
  # Whole cycles of experiments, so that device row j and Python row j % pool agree.
  pool = min(b, -(-python_batch // len(experiments)) * len(experiments))
  refs = [reference_env.ReferenceEnv(tables[experiments[i].task], experiments[i])
          for i in ids[:pool]]
  t_max = max(e.budget for e in experiments)
  turns = [[_turn(rng, r.table, r.experiment) for r in refs] for _ in range(t_max)]
  return _Batch(experiments, ids, refs, turns)


def _turn_tokens(batch: _Batch, tables_tok: grammar.TokenTables, b: int) -> np.ndarray:
  """int32[T, B, L] the device episodes' turns, padded to the batch's longest."""
  encoded = [[tables_tok.encode(t) for t in row] for row in batch.turns]
  length = max(len(i) for row in encoded for i in row)
  tokens = np.full((len(encoded), len(encoded[0]), length), tables_tok.tokenizer.pad_id,
                   np.int32)
  for t, row in enumerate(encoded):
    for j, i in enumerate(row):
      tokens[t, j, :len(i)] = i
  return tokens[:, np.arange(b) % tokens.shape[1]]


def main(argv):
  del argv
  tables = {t.name: t for t in tasks.load_all(_DATA_DIR.value)}
  experiments = [e for e in experiments_lib.curate(list(tables.values()))
                 if _SPLIT.value in ("all", e.split)]
  groups = ([[e for e in experiments if e.task == name]
             for name in dict.fromkeys(e.task for e in experiments)]
            if _BY_TASK.value else [experiments])
  rng = np.random.default_rng(_SEED.value)
  b = _BATCH.value
  batches = [_make_batch(tables, g, b, _PYTHON_BATCH.value, rng) for g in groups]
  # The tokenizer of a model trained from scratch on this kind of text.
  corpus = [r.prompt() for batch in batches for r in batch.refs[:len(batch.experiments)]]
  corpus += [t for batch in batches for row in batch.turns
             for t in row[:4 * len(batch.experiments)]]
  tokenizer = sp_tokenizer.train_sentencepiece(corpus, vocab_size=_VOCAB.value)
  tables_tok = grammar.TokenTables.build(tokenizer)
  device_args = [(jax.device_put(env_lib.build_env_params(tables, batch.experiments,
                                                           tables_tok)),
                  jnp.asarray(batch.ids),
                  jax.device_put(_turn_tokens(batch, tables_tok, b)))
                 for batch in batches]
  live_steps = sum(batch.live_steps(b) for batch in batches)
  python_steps = sum(batch.live_steps(len(batch.refs)) for batch in batches)

  @jax.jit
  def episodes(params, ids, key, turns):
    """Reset, then every turn in a `lax.scan`, as a jitted rollout runs the env; every
    turn's feedback and reward is an output, so none of the work can be optimized away."""
    def turn(state, action_tokens):
      state, feedback, reward, _ = env_lib.step(params, state, action_tokens)
      return state, (feedback, reward)

    return jax.lax.scan(turn, env_lib.reset(params, ids, key), turns)

  def device_batches(keys) -> None:
    for key in keys:
      for params, ids, turns in device_args:
        out = episodes(params, ids, key, turns)
    jax.block_until_ready(out)

  def python_pass() -> None:
    for batch in batches:
      for r in batch.refs:
        r.reset()
      for row in batch.turns:
        for r, turn in zip(batch.refs, row):
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
  python_rate = _ROUNDS.value * python_steps / times["python"]
  shapes = ", ".join(
      f"{len(batch.experiments)} {batch.experiments[0].task if _BY_TASK.value else 'mixed'} "
      f"({turns.shape[2]} turn tokens)" for batch, (_, _, turns) in zip(batches, device_args))
  print(f"experiments ({_SPLIT.value}): {shapes}; vocab {tokenizer.vocab_size}, "
        f"device {jax.devices()[0].platform}")
  print(f"env steps/s by CPU time: device={device_rate[0]:.0f} python={python_rate[0]:.0f} "
        f"ratio={device_rate[0] / python_rate[0]:.1f}")
  print(f"env steps/s: device={device_rate[1]:.0f} python={python_rate[1]:.0f} "
        f"ratio={device_rate[1] / python_rate[1]:.1f} batch={b} "
        f"python_batch={max(len(batch.refs) for batch in batches)}")


if __name__ == "__main__":
  app.run(main)
