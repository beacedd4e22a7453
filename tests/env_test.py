"""The device env against the plain-Python reference env, on small tasks built here."""

import itertools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax import env as env_lib
from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import reference_env
from autollm_jax import sp_tokenizer
from autollm_jax import token_fsm
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import Metric, Param, TaskTable

_WORDS = ("the best lr fell as N grew so try a smaller one between the two cheap optima "
          "ratio bias width").split()


def _table(name, params, metric, fidelity_scale, configs_per_fidelity, outcome_fn, rng):
  configs, fidelity, outcomes = [], [], []
  for f, configs_f in enumerate(configs_per_fidelity):
    configs.append(configs_f)
    fidelity += [f] * len(configs_f)
    outcomes.append(outcome_fn(configs_f, f, rng))
  return TaskTable(
      name=name, description=f"choose the {', '.join(p.name for p in params)} of a toy run",
      params=params, metrics=(metric,),
      fidelity_names=tuple(f"f{i}" for i in range(len(configs_per_fidelity))),
      fidelity_scale_names=("N",), fidelity_scale=np.array(fidelity_scale, float)[:, None],
      configs=np.concatenate(configs), fidelity_index=np.array(fidelity, np.int32),
      outcomes=np.concatenate(outcomes)[:, None])


def toy_tables(seed: int = 0) -> list[TaskTable]:
  """Three tasks shaped like the gym's: log grid, mixed scales with a categorical, ratios."""
  rng = np.random.default_rng(seed)
  grid = np.array(list(itertools.product(2.0 ** np.arange(-12, -5), 2.0 ** np.arange(5, 11))))

  def loss(c, f, rng):
    y = 2.5 - 0.2 * f + 0.05 * (np.log2(c[:, 0]) + 9 + f) ** 2 + 0.01 * np.log2(c[:, 1])
    y = y + 0.001 * rng.standard_normal(len(c))
    return np.where(rng.random(len(c)) < 0.1, 7.0 + rng.random(len(c)), y)

  steplaw = _table("toy_steplaw", (Param("lr", "log"), Param("bs", "log")),
                   Metric("smooth loss", "min"), [1e8, 3e8, 1e9],
                   [grid, grid[rng.random(len(grid)) < 0.8], grid], loss, rng)
  arch = np.array(list(itertools.product([192, 384, 768], [10, 11, 12], [0.0, 1.0])))
  arch_task = _table(
      "toy_arch", (Param("embed_dim", "log"), Param("n_layer", "linear"),
                   Param("bias", "categorical", (0.0, 1.0))),
      Metric("perplexity", "min"), [1e8, 4e8], [arch, arch],
      lambda c, f, rng: 30 - 3 * f - c[:, 0] / 100 + c[:, 2] + rng.random(len(c)), rng)
  ratios = np.round(rng.dirichlet(np.full(4, 0.5), size=(2, 30)) * 20) / 20
  mixture = _table(
      "toy_mixture", tuple(Param(f"ratio_{s}", "linear") for s in ("code", "math", "chat", "v2")),
      Metric("score", "max"), [5e8, 3e9], list(ratios),
      lambda c, f, rng: c @ np.array([0.3, -0.4, 0.5, 0.1]) + 0.1 * f - 0.1 * rng.random(len(c)),
      rng)
  return [steplaw, arch_task, mixture]


def toy_experiments(tables) -> list[Experiment]:
  out = []
  for t, (table, budget) in enumerate(zip(tables, (5, 3, 4))):
    target = len(table.fidelity_names) - 1
    rows = table.rows(target)
    context = tuple(range(target))
    context_rows = np.flatnonzero(table.fidelity_index < target)
    for variant, (cands, b) in enumerate([(rows, budget), (rows[::2], 1 + t)]):
      out.append(Experiment(
          name=f"{table.name}/{variant}", task=table.name, split="test",
          target_fidelity=target, context_fidelities=context, metric=table.metrics[0].name,
          budget=b, candidate_rows=cands, context_rows=context_rows))
  return out


def toy_tokenizer(tables, experiments, seed: int = 0):
  """A SentencePiece model trained on the toy experiments' protocol text."""
  rng = np.random.default_rng(seed)
  by_name = {t.name: t for t in tables}
  texts = []
  for e in experiments:
    table = by_name[e.task]
    ref = reference_env.ReferenceEnv(table, e)
    texts.append(ref.prompt())
    for _ in range(e.budget):
      turn = random_turn(rng, table, e)
      texts.append(turn + ref.step(turn)[0])
  return sp_tokenizer.train_sentencepiece(texts * 4, vocab_size=600)


def random_value(rng, lo: float, hi: float, scale: str) -> float:
  """A value in range, out of range, at an extreme, or exactly a candidate's."""
  kind = rng.integers(6)
  if kind == 0:
    return float(rng.choice([0.0, 1e-99, 9.99e99, 1.23e-40, 4.56e40]))
  if kind == 1:
    return float(rng.choice([lo, hi]))
  if kind == 2:  # out of range by up to 3 decades (or spans) on either side
    return (float(lo * 10.0 ** -rng.uniform(0, 3) if rng.random() < 0.5
                  else hi * 10.0 ** rng.uniform(0, 3)) if scale == "log" and lo > 0 else
            float(abs(hi + (hi - lo + 1) * rng.uniform(-3, 3))))
  if scale == "log" and lo > 0:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
  return float(rng.uniform(lo, hi))


def random_turn(rng, table, experiment) -> str:
  """A turn with random reasoning and a random action; about 1 in 10 is malformed."""
  cands = table.configs[experiment.candidate_rows]
  if rng.random() < 0.3:
    values = list(cands[rng.integers(len(cands))])
  else:
    values = [random_value(rng, cands[:, i].min(), cands[:, i].max(), p.scale)
              for i, p in enumerate(table.params)]
  reasoning = " ".join(rng.choice(_WORDS, size=rng.integers(1, 12)))
  turn = protocol.render_turn(reasoning, table.param_names, values)
  kind = rng.integers(20)
  if kind == 0:
    return turn.replace(protocol.EXECUTE, "execute")
  if kind == 1:
    return turn[:len(turn) - rng.integers(1, 14)]
  if kind == 2:
    return turn.replace(f" {table.param_names[-1]}=", " wrong=")
  return turn


class EnvTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tables = toy_tables()
    cls.experiments = toy_experiments(cls.tables)
    cls.tokenizer = toy_tokenizer(cls.tables, cls.experiments)
    cls.token_tables = grammar.TokenTables.build(cls.tokenizer)
    cls.by_name = {t.name: t for t in cls.tables}

  def _params(self, **kw):
    return env_lib.build_env_params(self.tables, self.experiments, self.token_tables, **kw)

  def _encode_batch(self, turns, length=None):
    ids = [self.token_tables.encode(t) for t in turns]
    length = length or max(len(i) for i in ids)
    out = np.full((len(ids), length), self.tokenizer.pad_id, np.int32)
    for row, i in zip(out, ids):
      row[:len(i)] = i
    return out

  def _run_both(self, params, episodes: int, seed: int, step_fn=None):
    """Drives the device env and the reference env with the same random turns."""
    rng = np.random.default_rng(seed)
    ids = np.arange(episodes) % len(self.experiments)
    refs = [reference_env.ReferenceEnv(self.by_name[self.experiments[i].task],
                                       self.experiments[i], reward_mode=params.reward_mode,
                                       regret_kind=params.regret_kind) for i in ids]
    step_fn = step_fn or jax.jit(env_lib.step)
    state = jax.jit(env_lib.reset)(params, jnp.asarray(ids), jax.random.key(seed))
    log = []
    for _ in range(params.max_budget):
      turns = [random_turn(rng, r.table, r.experiment) for r in refs]
      tokens = self._encode_batch(turns, length=160)
      new_state, feedback, reward, done = step_fn(params, state, jnp.asarray(tokens))
      expected = [r.step(t) for r, t in zip(refs, turns)]
      log.append((turns, tokens) + jax.device_get((state, new_state, feedback, reward, done)) +
                 (expected,))
      state = new_state
    return refs, log

  @parameterized.parameters(("terminal", "strict", 720), ("shaped", "strict", 160),
                            ("terminal", "normalized", 160), ("shaped", "normalized", 160))
  def test_matches_reference_env(self, reward_mode, regret_kind, episodes):
    params = self._params(reward_mode=reward_mode, regret_kind=regret_kind)
    refs, log = self._run_both(params, episodes=episodes, seed=episodes)
    parse = jax.jit(env_lib.parse_action)
    compared = ties = malformed = 0
    diverged = np.zeros(len(refs), bool)
    for trial, (turns, tokens, before, state, feedback, reward, done, expected) in enumerate(log):
      ok, mantissa, exponent = jax.device_get(parse(params, before.experiment, tokens))
      for b, (turn, ref) in enumerate(zip(turns, refs)):
        if trial >= ref.experiment.budget:
          self.assertEqual(int(feedback.length[b]), 0)
          self.assertEqual(float(reward[b]), 0.0)
          self.assertTrue(done[b])
          continue
        numbers = ref.parse(turn)
        self.assertEqual(bool(ok[b]), numbers is not None, turn)
        if numbers is None:
          malformed += 1
        else:
          parsed = tuple(f"{m // 100}.{m % 100:02d}e{e:+03d}" for m, e in
                         zip(mantissa[b], exponent[b]))[:len(numbers)]
          self.assertEqual(parsed, numbers)
        if numbers is not None and not diverged[b]:
          # After a divergence the two episodes have run different candidates, so their
          # untried sets (and hence matches) may differ: compare only until then.
          index = ref.history[trial]
          device_index = int(state.history[b, trial])
          if device_index != index:  # float32 vs float64: only near-ties may differ
            dist = ref.distances(numbers)
            self.assertLess(abs(dist[device_index] - dist[index]), 1e-5 * (1 + dist[index]))
            diverged[b] = True
            ties += 1
        if diverged[b]:
          continue
        text, ref_reward, ref_done = expected[b]
        length = int(feedback.length[b])
        got = np.asarray(feedback.tokens[b])
        self.assertEqual(list(got[:length]), self.token_tables.encode(text))
        self.assertEqual(self.tokenizer.decode(got[:length]), text)
        self.assertTrue(np.all(got[length:] == self.tokenizer.pad_id))
        self.assertAlmostEqual(float(reward[b]), ref_reward, delta=1e-5)
        self.assertEqual(bool(done[b]), ref_done)
        self.assertEqual(int(state.history[b, trial]), -1 if ref.history[trial] is None
                         else ref.history[trial])
        compared += 1
    self.assertGreater(compared, 2 * episodes)
    self.assertGreater(malformed, episodes // 40)
    self.assertLess(ties, compared // 100 + 1)

  def test_a_repeated_action_runs_a_new_candidate_each_trial(self):
    params = self._params()
    ids = np.arange(len(self.experiments))
    refs = [reference_env.ReferenceEnv(self.by_name[e.task], e) for e in self.experiments]
    turns = [protocol.render_turn("again", r.table.param_names,
                                  r.table.configs[r.experiment.candidate_rows[0]])
             for r in refs]
    tokens = jnp.asarray(self._encode_batch(turns))
    state = env_lib.reset(params, jnp.asarray(ids), jax.random.key(0))
    step = jax.jit(env_lib.step)
    for _ in range(params.max_budget):
      state = step(params, state, tokens)[0]
      for r, t in zip(refs, turns):
        r.step(t)
    history = np.asarray(state.history)
    for b, r in enumerate(refs):
      budget = r.experiment.budget
      self.assertEqual(list(history[b, :budget]), r.history)
      self.assertEqual(r.history[0], 0)
      self.assertLen(set(r.history), budget)
      self.assertTrue(np.all(history[b, budget:] == -1))

  def test_episode_return_is_the_same_with_and_without_shaping(self):
    returns = {}
    for mode in env_lib.REWARD_MODES:
      params = self._params(reward_mode=mode)
      _, log = self._run_both(params, episodes=48, seed=3)
      returns[mode] = sum(np.asarray(entry[5]) for entry in log)
    np.testing.assert_allclose(returns["shaped"], returns["terminal"], atol=1e-5)
    self.assertTrue(np.all(returns["terminal"] <= 0) and np.all(returns["terminal"] >= -1))

  def test_sharded_batch_gives_the_same_results(self):
    self.assertEqual(jax.device_count(), 8)
    params = self._params()
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded_step = jax.jit(
        env_lib.step, in_shardings=(replicated, batch, batch),
        out_shardings=(batch, batch, batch, batch))
    _, plain = self._run_both(params, episodes=64, seed=5)
    _, sharded = self._run_both(params, episodes=64, seed=5, step_fn=sharded_step)
    for a, b in zip(plain, sharded):
      chex.assert_trees_all_equal(a[3:7], b[3:7])
    state = env_lib.reset(params, jnp.arange(64) % len(self.experiments), jax.random.key(0))
    tokens = jnp.asarray(sharded[0][1])
    self.assertLen(sharded_step(params, state, tokens)[0].trial.sharding.device_set, 8)

  def _one_task(self, e: int) -> tuple[env_lib.EnvParams, int]:
    """EnvParams of experiment e's task alone, and e's index in them."""
    same = [i for i, x in enumerate(self.experiments) if x.task == self.experiments[e].task]
    return (env_lib.build_env_params(self.tables, [self.experiments[i] for i in same],
                                     self.token_tables), same.index(e))

  @parameterized.parameters(False, True)
  def test_parses_actions_at_the_edges_of_the_turn_like_the_reference(self, one_task):
    parse = jax.jit(env_lib.parse_action)
    execute = protocol.EXECUTE
    reasoning = " ".join(np.random.default_rng(11).choice(_WORDS, size=30))
    parsed = 0
    for e, experiment in enumerate(self.experiments):
      params, index = self._one_task(e) if one_task else (self._params(), e)
      table = self.by_name[experiment.task]
      values = list(table.configs[experiment.candidate_rows[-1]])
      turn = protocol.render_turn(reasoning, table.param_names, values)
      ids = self.token_tables.encode(turn)
      action = self.token_tables.encode(protocol.render_action(table.param_names, values))
      cases = [
          ids,  # ends the turn, starting less than the longest action before its end
          ids[:-1],  # cut by the end of the turn
          action,  # the whole turn
          self.token_tables.encode(turn.replace(reasoning, f"so {execute} {reasoning}")),
          self.token_tables.encode(f"{turn} {execute}"),  # a second one after the action
          ids[:5], ids[-5:], ids[-12:]]  # shorter than a number, or than a block
      for tokens in cases:
        ok, mantissa, exponent = jax.device_get(
            parse(params, jnp.array([index]), jnp.array([tokens], jnp.int32)))
        numbers = reference_env.ReferenceEnv(table, experiment).parse(
            self.tokenizer.decode(tokens))
        self.assertEqual(bool(ok[0]), numbers is not None, self.tokenizer.decode(tokens))
        if numbers is not None:
          parsed += 1
          device_numbers = tuple(f"{m // 100}.{m % 100:02d}e{x:+03d}"
                                 for m, x in zip(mantissa[0], exponent[0]))
          self.assertEqual(device_numbers[:len(numbers)], numbers)
    self.assertEqual(parsed, 3 * len(self.experiments))

  def test_one_task_params_give_the_same_results(self):
    params = self._params()
    _, log = self._run_both(params, episodes=48, seed=9)
    step = jax.jit(env_lib.step)
    for e in range(len(self.experiments)):
      one, index = self._one_task(e)
      rows = np.flatnonzero(np.asarray(log[0][2].experiment) == e)
      state = jax.tree.map(lambda x: x[rows], log[0][2]).replace(
          experiment=jnp.full(len(rows), index, jnp.int32))
      for _, tokens, _, expected, feedback, reward, done, _ in log:
        state, got, got_reward, got_done = step(one, state, tokens[rows])
        for field in ("trial", "best_index", "best_y", "history", "done"):
          np.testing.assert_array_equal(getattr(state, field), getattr(expected, field)[rows])
        np.testing.assert_array_equal(got.length, feedback.length[rows])
        for b, length in enumerate(np.asarray(got.length)):
          np.testing.assert_array_equal(got.tokens[b, :length],
                                        feedback.tokens[rows[b], :length])
        np.testing.assert_array_equal(got_reward, reward[rows])
        np.testing.assert_array_equal(got_done, done[rows])

  def test_grammar_constrained_actions_always_parse(self):
    params = self._params()
    gram = jax.device_put(params.grammar)
    rng = np.random.default_rng(7)
    parse = jax.jit(env_lib.parse_action)
    for e in range(len(self.experiments)):
      state = int(gram.free_state[params.task[e]])
      live = np.asarray(params.grammar_live[e])
      tokens = []
      for t in range(200):
        allowed = np.flatnonzero(token_fsm.allowed_np(gram.fsm, state, live))
        if t == 5 and not np.asarray(gram.is_done)[state]:
          allowed = [self.token_tables.marker_ids[protocol.EXECUTE]]  # end the reasoning
        token = int(rng.choice(allowed))
        tokens.append(token)
        state = int(grammar.advance(gram, state, token))
        if grammar.is_complete(gram, state):
          break
      self.assertTrue(grammar.is_complete(gram, state))
      ok, _, _ = parse(params, jnp.array([e]), jnp.array([tokens], jnp.int32))
      self.assertTrue(ok[0])
      ref = reference_env.ReferenceEnv(self.by_name[self.experiments[e].task],
                                       self.experiments[e])
      self.assertIsNotNone(ref.parse(self.tokenizer.decode(tokens)))
      # Its values are among the experiment's own candidates' (grammar_live).
      table = self.by_name[self.experiments[e].task]
      own = protocol.param_values(table.configs[self.experiments[e].candidate_rows])
      numbers = protocol.parse_action(self.tokenizer.decode(tokens), table.param_names)
      for value, allowed_values in zip(numbers, own):
        self.assertIn(value, allowed_values)

  def test_without_candidate_values_any_number_is_allowed(self):
    params = self._params(candidate_values=False)
    gram = params.grammar
    self.assertFalse(np.any(gram.in_value))
    self.assertTrue(np.all(params.grammar_live))
    digits = self.token_tables.char_ids[:10]
    for start in np.asarray(gram.value_start)[np.asarray(gram.value_start) >= 0]:
      self.assertTrue(np.all(token_fsm.allowed_np(gram.fsm, start)[digits]))
    with_values = self._params().grammar
    self.assertTrue(np.any(with_values.in_value))
    start = with_values.value_start[0, 0]
    self.assertLess(token_fsm.allowed_np(with_values.fsm, start).sum(), 10)

  def test_reset_and_grammar_start(self):
    params = self._params()
    state = env_lib.reset(params, jnp.array([0, 2, 4]), jax.random.key(0))
    chex.assert_trees_all_equal(state.best_index, jnp.array([-1, -1, -1]))
    self.assertEqual(state.history.shape, (3, 5))
    np.testing.assert_array_equal(env_lib.grammar_start(params, state),
                                  params.grammar.free_state[[0, 1, 2]])

  def test_build_rejects_unknown_tasks_and_bad_budgets(self):
    with self.assertRaisesRegex(KeyError, "toy_arch"):
      env_lib.build_env_params(self.tables[:1], self.experiments, self.token_tables)
    bad = [e for e in self.experiments if e.task == "toy_steplaw"][:1]
    bad = [Experiment(**{**bad[0].__dict__, "budget": 12})]
    with self.assertRaisesRegex(ValueError, "budget 12"):
      env_lib.build_env_params(self.tables, bad, self.token_tables)


if __name__ == "__main__":
  absltest.main()
