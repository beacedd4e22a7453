"""The environment on the device: pure `reset` / `step` over pytrees, batched, jit-compatible.

An episode configures one experiment: each step takes the agent's turn as tokens, parses the
action after its first `<execute>` token (the canonical tokens of `autollm_jax.grammar`), maps
the proposed configuration to the nearest candidate not run yet in the episode, looks up its
outcome, updates the best so far, and renders the feedback (`autollm_jax.protocol`) as tokens,
all on the device.

Matching: each proposed value is turned into its feature (`autollm_jax.matching`: log10 for
log parameters, scaled by the candidates' spread) and, for non-categorical parameters, clipped
to the candidates' range on that axis; the nearest candidate the episode has not run is then
chosen (a trial spent on a configuration already run would only repeat its outcome; once every
candidate has run, all are open again). An action that does not parse (no `<execute>`, or
tokens off the grammar) uses a trial, is reported as `none`, and leaves the best unchanged.

Reward (`reward_mode`), from the regret R_t of the best found after trial t (`regret_kind`:
"strict" = `regret.strict_regret`, "normalized" = `regret.normalized_regret`; R_t = 1 while
nothing has parsed):
  "terminal": -R_T on the episode's last trial (T = budget), 0 before;
  "shaped":   R_{t-1} - R_t with R_0 = 0, i.e. -R_1 on the first trial and then each trial's
              improvement; the per-episode sum equals the terminal reward -R_T.
Stepping an episode that is already done changes nothing and gives reward 0 and no feedback.

Numbers are float32 on the device; the NumPy reference (`autollm_jax.reference_env`) works in
float64, so the two can pick different candidates only when two candidates are (nearly) tied.
On the device, linear and categorical values saturate beyond 1e37 and below 1e-33, which
changes nothing after clipping (categorical choices must lie within those bounds).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from autollm_jax import grammar as grammar_lib
from autollm_jax import matching
from autollm_jax import protocol
from autollm_jax import regret as regret_lib
from autollm_jax.experiments import Experiment
from autollm_jax.gym.table import TaskTable
from autollm_jax.tokenizer import Tokenizer

REWARD_MODES = ("terminal", "shaped")
REGRET_KINDS = ("strict", "normalized")
_NUMBER_WIDTH = len(grammar_lib.NUMBER_CLASSES)
_CODE = {c: i for i, c in enumerate(grammar_lib.CHARS)}
# Where in a number its digits (three of the mantissa, two of the exponent) and sign are.
_NUMBER_FREE = (0, 2, 3, 6, 7, 5)
_MAX_POW10 = 35  # keeps 999 * 10**k finite in float32; larger exponents saturate
# log10 of each mantissa 0..999 (a table is cheaper than log10 on the device); log10(0) is
# -inf, which the clip to the candidates' range turns into their lowest value.
_LOG10_MANTISSA = np.concatenate([[-np.inf], np.log10(np.arange(1, 1000))]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ActionLayout:
  """Where things are in one task's action after `<execute>` (static: shapes depend on it).

  Attributes:
    length: the action's length in tokens.
    number_start: the position of each parameter's number.
  """

  length: int
  number_start: tuple[int, ...]


@struct.dataclass
class EnvParams:
  """Every experiment of a batch as device arrays, padded to the largest (E experiments, N
  candidates, P parameters, W action tokens), in the layout `step` reads.

  A batch pays for the largest shapes among its experiments, and parses every turn as an
  action of each of their tasks: the fastest batches hold one task's experiments (one
  EnvParams per task, as bench/env_bench.py plays them).

  Attributes:
    cand_features: float32[E, P, N] candidate features (`matching.features`, transposed so
      that each parameter's row over the candidates is contiguous), 0 in padding.
    transform: float32[E, 4, P] `matching.feature_transform` rows; padding (0, 0, 0, 1).
    feature_hi: float32[E, P] largest candidate feature per parameter (clip bound).
    param_mask: bool[E, P] real parameters.
    cand_y: float32[E, N] outcomes in the minimized convention (sign * metric).
    valid: bool[E, N] real candidates.
    y_star, y_worst, y_median: float32[E] `regret.normalizers` of the candidates.
    budget: int32[E] trials per episode.
    task: int32[E] the experiment's task in `grammar`.
    act_forced: int32[Tasks, W] each task's action after `<execute>` (`grammar.ActionTemplate`,
      W the longest) as the tokens it must have: its literal tokens and the number format's
      '.' and 'e', -1 at digits and signs and after its end.
    char_code: int32[V] token -> index in `grammar.CHARS` or -1.
    digit_ids: int32[10] the digit tokens.
    execute_id: int32[] the `<execute>` token.
    fb_first: int32[E, N + 1, F], fb_first_len: int32[E, N + 1] the feedback up to the best,
      "\\n<obs> {metric}={outcome} best=", with candidate n's outcome (row N: `none`).
    fb_kind: int32[E, N + 1] which of the K lengths of an outcome's tokens row n's has.
    fb_second: int32[E, K, N + 1, F] the rest, "{best} left={digit} </obs>\\n" with candidate n
      as the best and pad_id in the digit's place, where it starts after an outcome of the
      k-th length; pad_id around it.
    fb_second_len: int32[E, N + 1] the length of "{best} left=".
    fb_tail_len: int32[] the length of " </obs>\\n".
    pad_id: int32[] the padding token of feedback blocks.
    grammar: the action grammar of the experiments' tasks, each value one of its task's
      candidate values (`protocol.param_values`).
    grammar_live: bool[E, S] the grammar states each experiment's actions may enter
      (`grammar.live_states`: its own candidates' values).
    actions: static, each task's `ActionLayout` (task t is index t of `task` and `act_forced`).
    categorical: static, the parameter slots that are categorical in some experiment.
    max_budget: static, the largest budget (T, the length of EnvState.history).
    reward_mode, regret_kind: static reward options (module docstring).
  """

  cand_features: Float[Array, "E P N"]
  transform: Float[Array, "E 4 P"]
  feature_hi: Float[Array, "E P"]
  param_mask: Bool[Array, "E P"]
  cand_y: Float[Array, "E N"]
  valid: Bool[Array, "E N"]
  y_star: Float[Array, " E"]
  y_worst: Float[Array, " E"]
  y_median: Float[Array, " E"]
  budget: Int[Array, " E"]
  task: Int[Array, " E"]
  act_forced: Int[Array, "Tasks W"]
  char_code: Int[Array, " V"]
  digit_ids: Int[Array, " 10"]
  execute_id: Int[Array, ""]
  fb_first: Int[Array, "E N1 F"]
  fb_first_len: Int[Array, "E N1"]
  fb_kind: Int[Array, "E N1"]
  fb_second: Int[Array, "E K N1 F"]
  fb_second_len: Int[Array, "E N1"]
  fb_tail_len: Int[Array, ""]
  pad_id: Int[Array, ""]
  grammar: grammar_lib.Grammar
  grammar_live: Bool[Array, "E S"]
  actions: tuple[ActionLayout, ...] = struct.field(pytree_node=False, default=())
  categorical: tuple[int, ...] = struct.field(pytree_node=False, default=())
  max_budget: int = struct.field(pytree_node=False, default=protocol.MAX_BUDGET)
  reward_mode: str = struct.field(pytree_node=False, default="terminal")
  regret_kind: str = struct.field(pytree_node=False, default="strict")

  @property
  def feedback_len(self) -> int:
    """F: the length of a feedback token block."""
    return self.fb_first.shape[-1]


@struct.dataclass
class EnvState:
  """A batch of episodes (leading axis B).

  Attributes:
    experiment: int32[B] index into EnvParams.
    trial: int32[B] trials used.
    best_index: int32[B] candidate of the best outcome so far, -1 before any.
    best_y: float32[B] its minimized outcome, +inf before any.
    history: int32[B, T] the candidate matched at each trial, -1 if it did not parse or is
      still to come (T = the largest budget).
    done: bool[B] all trials used.
    key: PRNG keys[B], one per episode, for policies that sample (e.g. random search).
  """

  experiment: Int[Array, " B"]
  trial: Int[Array, " B"]
  best_index: Int[Array, " B"]
  best_y: Float[Array, " B"]
  history: Int[Array, "B T"]
  done: Bool[Array, " B"]
  key: PRNGKeyArray


@struct.dataclass
class Feedback:
  """Feedback blocks: tokens int32[B, F] (padded with pad_id) and their lengths int32[B]."""

  tokens: Int[Array, "B F"]
  length: Int[Array, " B"]


def _pad(rows: Sequence[np.ndarray], shape: tuple[int, ...], fill, dtype) -> np.ndarray:
  out = np.full((len(rows),) + shape, fill, dtype=dtype)
  for i, r in enumerate(rows):
    out[(i,) + tuple(slice(0, s) for s in np.shape(r))] = r
  return out


def _padded(tokens: list[int], size: int, pad: int) -> list[int]:
  return tokens + [pad] * (size - len(tokens))


def _checked_template(template: grammar_lib.ActionTemplate,
                      tt: grammar_lib.TokenTables) -> np.ndarray:
  """The template's tokens with the number format's '.' and 'e' filled in (single tokens)."""
  forced = template.forced.copy()
  for char, char_class in ((".", grammar_lib.POINT), ("e", grammar_lib.EXP)):
    forced[template.char_class == char_class] = tt.char_ids[_CODE[char]]
  return forced


def _feedback_tables(heads: Sequence[list[int]], outcomes: Sequence[Sequence[list[int]]],
                     tt: grammar_lib.TokenTables) -> dict[str, np.ndarray]:
  """The fb_* fields of EnvParams.

  Args:
    heads: each experiment's tokens of "\\n<obs> {metric}=".
    outcomes: each experiment's N + 1 rows of value tokens (outcomes, empty padding, `none`).
    tt: the token tables.
  """
  _, best, left, tail = (tt.template_literal(part) for part in protocol.feedback_parts(""))
  kinds = sorted({len(v) for rows in outcomes for v in rows})
  size = max(len(h) for h in heads) + len(best) + 2 * kinds[-1] + len(left) + 1 + len(tail)
  pad = tt.tokenizer.pad_id
  first = [[head + v + best for v in rows] for head, rows in zip(heads, outcomes)]
  # "{best} left=", a slot for the digit and the tail, where they start after an outcome of
  # each length.
  second = [[[_padded([pad] * (len(head) + k + len(best)) + v + left + [pad] + tail, size, pad)
              for v in rows] for k in kinds] for head, rows in zip(heads, outcomes)]
  return dict(
      fb_first=np.array([[_padded(r, size, pad) for r in rows] for rows in first], np.int32),
      fb_first_len=np.array([[len(r) for r in rows] for rows in first], np.int32),
      fb_kind=np.array([[kinds.index(len(v)) for v in rows] for rows in outcomes], np.int32),
      fb_second=np.array(second, np.int32),
      fb_second_len=np.array([[len(v) + len(left) for v in rows] for rows in outcomes],
                             np.int32),
      fb_tail_len=np.int32(len(tail)))


def build_env_params(tables: Sequence[TaskTable] | Mapping[str, TaskTable],
                     experiments: Sequence[Experiment],
                     tokenizer: Tokenizer | grammar_lib.TokenTables, *,
                     reward_mode: str = "terminal", regret_kind: str = "strict",
                     candidate_values: bool = True) -> EnvParams:
  """EnvParams for `experiments` (host, once).

  Args:
    tables: the TaskTables the experiments refer to (a sequence, or a mapping by name).
    experiments: E experiments; experiment i is index i of `reset`'s experiment ids.
    tokenizer: any Tokenizer (or its already-built TokenTables).
    reward_mode: "terminal" or "shaped" (module docstring).
    regret_kind: "strict" or "normalized".
    candidate_values: each value of an action one of its experiment's candidates' (False: any
      number in the PARAM format; `policy.PolicySettings.candidate_values`).
  Returns:
    EnvParams with NumPy leaves; `jax.device_put` it (or pass it to a jitted function).
  """
  if reward_mode not in REWARD_MODES or regret_kind not in REGRET_KINDS:
    raise ValueError(f"reward_mode must be one of {REWARD_MODES} and regret_kind one of "
                     f"{REGRET_KINDS}; got {reward_mode!r}, {regret_kind!r}")
  if not experiments:
    raise ValueError("build_env_params needs at least one experiment")
  by_name = dict(tables) if isinstance(tables, Mapping) else {t.name: t for t in tables}
  tt = (tokenizer if isinstance(tokenizer, grammar_lib.TokenTables) else
        grammar_lib.TokenTables.build(tokenizer))
  task_names = list(dict.fromkeys(e.task for e in experiments))
  missing = [n for n in task_names if n not in by_name]
  if missing:
    raise KeyError(f"experiments refer to tasks {missing} not among the tables given "
                   f"({sorted(by_name)})")
  templates = [grammar_lib.ActionTemplate.build(tt, by_name[n].param_names) for n in task_names]
  feats, transforms, his, ys, norms, value_tokens, heads = [], [], [], [], [], [], []
  for e in experiments:
    table = by_name[e.task]
    rows = np.asarray(e.candidate_rows)
    if not 1 <= e.budget <= protocol.MAX_BUDGET:
      raise ValueError(f"{e.name}: budget {e.budget} outside 1..{protocol.MAX_BUDGET}")
    if len(rows) == 0 or np.any(table.fidelity_index[rows] != e.target_fidelity):
      raise ValueError(f"{e.name}: candidate_rows must be non-empty rows of the target "
                       f"fidelity {e.target_fidelity}")
    metric = table.metric(e.metric)
    outcomes = table.outcomes[rows, table.metric_column(e.metric)]
    transform = matching.feature_transform(table.params, table.configs[rows])
    f = matching.features(table.configs[rows], transform)
    feats.append(f)
    transforms.append(transform)
    his.append(np.where(transform[1] > 0, 0.0, f.max(axis=0)))
    ys.append(metric.sign() * outcomes)
    norms.append(regret_lib.normalizers(outcomes, metric.sign()))
    value_tokens.append([tt.value(protocol.format_outcome(y)) for y in outcomes] +
                        [tt.value(protocol.NONE)])  # the last one is `none`
    heads.append(tt.template_literal(protocol.feedback_parts(metric.name)[0]))
  n = max(len(y) for y in ys)
  p = max(f.shape[1] for f in feats)
  transform_pad = np.tile(np.array([0.0, 0.0, 0.0, 1.0])[:, None], (len(experiments), 1, p))
  for i, t in enumerate(transforms):
    transform_pad[i, :, :t.shape[1]] = t
  # Each experiment's rows 0..n-1 are its candidates' outcomes (then empty ones), row n `none`.
  outcomes = [vs[:-1] + [[]] * (n + 1 - len(vs)) + vs[-1:] for vs in value_tokens]
  task_of = [task_names.index(e.task) for e in experiments]
  names = [by_name[name].param_names for name in task_names]
  if candidate_values:
    values = [protocol.param_values(by_name[e.task].configs[np.asarray(e.candidate_rows)])
              for e in experiments]
    task_values = [[set() for _ in n] for n in names]  # each task's trie: its experiments'
    for t, experiment_values in zip(task_of, values):
      for j, param_values in enumerate(experiment_values):
        task_values[t][j].update(param_values)
    gram = grammar_lib.build_grammar(tt, names, task_values)
    live = np.stack([grammar_lib.live_states(gram, tt, t, v) for t, v in zip(task_of, values)])
  else:
    gram = grammar_lib.build_grammar(tt, names)
    live = np.ones((len(experiments), gram.fsm.num_states), bool)
  forced = [_checked_template(t, tt) for t in templates]
  return EnvParams(
      cand_features=_pad([f.T for f in feats], (p, n), 0.0, np.float32),
      transform=transform_pad.astype(np.float32),
      feature_hi=_pad(his, (p,), 0.0, np.float32),
      param_mask=_pad([np.ones(f.shape[1], bool) for f in feats], (p,), False, bool),
      cand_y=_pad(ys, (n,), 0.0, np.float32),
      valid=_pad([np.ones(len(y), bool) for y in ys], (n,), False, bool),
      y_star=np.array([v[0] for v in norms], np.float32),
      y_worst=np.array([v[1] for v in norms], np.float32),
      y_median=np.array([v[2] for v in norms], np.float32),
      budget=np.array([e.budget for e in experiments], np.int32),
      task=np.array(task_of, np.int32),
      act_forced=_pad(forced, (max(len(f) for f in forced),), -1, np.int32),
      char_code=tt.char_code,
      digit_ids=tt.char_ids[:10],
      execute_id=np.int32(tt.marker_ids[protocol.EXECUTE]),
      **_feedback_tables(heads, outcomes, tt),
      pad_id=np.int32(tt.tokenizer.pad_id),
      grammar=gram,
      grammar_live=live,
      actions=tuple(ActionLayout(len(t), tuple(t.number_start.tolist())) for t in templates),
      categorical=tuple(int(j) for j in np.flatnonzero(transform_pad[:, 1].max(axis=0) > 0)),
      max_budget=max(e.budget for e in experiments), reward_mode=reward_mode,
      regret_kind=regret_kind)


def reset(params: EnvParams, experiment_ids: Int[Array, " B"],
          key: PRNGKeyArray) -> EnvState:
  """Fresh episodes of the given experiments."""
  b = experiment_ids.shape[0]
  return EnvState(
      experiment=jnp.asarray(experiment_ids, jnp.int32),
      trial=jnp.zeros(b, jnp.int32),
      best_index=jnp.full(b, -1, jnp.int32),
      best_y=jnp.full(b, jnp.inf, jnp.float32),
      history=jnp.full((b, params.max_budget), -1, jnp.int32),
      done=jnp.zeros(b, bool),
      key=jax.random.split(key, b))


def grammar_start(params: EnvParams, state: EnvState) -> Int[Array, " B"]:
  """The grammar state each episode's turn starts in (its task's free state)."""
  return params.grammar.free_state[params.task[state.experiment]]


def _first_true(mask: Bool[Array, "B L"]) -> Int[Array, " B"]:
  """The index of each row's first True, or L in a row without one."""
  length = mask.shape[1]
  # A float max over a constant countdown: XLA on CPU vectorizes float reductions (integer
  # ones it does not) and would convert an iota to float element by element.
  countdown = jnp.where(mask, np.arange(length, 0, -1, dtype=np.float32), 0.0)
  return length - jnp.max(countdown, axis=1).astype(jnp.int32)


def _parse_task(params: EnvParams, layout: ActionLayout, forced: Int[Array, " W"],
                tokens: Int[Array, "B L"], start: Int[Array, " B"]
                ) -> tuple[Bool[Array, " B"], Int[Array, "B Pt"], Int[Array, "B Pt"]]:
  """Every turn parsed as an action of one task from `start`, as `parse_action` returns it."""
  length = tokens.shape[1]
  # Where the action would run past the turn, the window is cut earlier (dynamic_slice clamps
  # its start); such rows fail the length check.
  window = jax.vmap(lambda row, at: jax.lax.dynamic_slice(row, (at,), (layout.length,)))(
      tokens, start)
  forced = forced[:layout.length]
  mismatches = jnp.sum(jnp.where((forced >= 0) & (window != forced), 1.0, 0.0), axis=1)
  # Each parameter's number, parameter-major (what follows then runs along the batch), by one
  # gather rather than a slice each.
  dims = jax.lax.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(),
                                        start_index_map=(1,))
  number = jax.lax.gather(window, np.array(layout.number_start)[:, None], dims,
                          (window.shape[0], _NUMBER_WIDTH))
  code = jnp.take(params.char_code, number, mode="clip")  # [P_t, B, 8]
  *digits, sign = (code[..., i] for i in _NUMBER_FREE)
  fits = ((sign == _CODE["+"]) | (sign == _CODE["-"])) & functools.reduce(
      jnp.logical_and, [(d >= 0) & (d <= 9) for d in digits])
  ok = (start + layout.length <= length) & (mismatches == 0) & jnp.all(fits, axis=0)
  d0, d2, d3, d6, d7 = digits
  return (ok, (100 * d0 + 10 * d2 + d3).T,
          (jnp.where(sign == _CODE["-"], -1, 1) * (10 * d6 + d7)).T)


def parse_action(params: EnvParams, experiments: Int[Array, " B"], tokens: Int[Array, "B L"]
                 ) -> tuple[Bool[Array, " B"], Int[Array, "B P"], Int[Array, "B P"]]:
  """Parses each turn's action: the template after the turn's first `<execute>` token.

  Args:
    params: the env params.
    experiments: int32[B] each turn's experiment (its task's action template).
    tokens: int32[B, L] the agent's turns.
  Returns:
    (ok bool[B], mantissa int32[B, P] in 0..999, exponent int32[B, P] in -99..99): parameter
    p's value is mantissa * 10**(exponent - 2); zeros for padding parameters or when not ok.
  """
  b, length = tokens.shape
  p = params.param_mask.shape[1]
  ok = jnp.zeros(b, bool)
  mantissa = exponent = jnp.zeros((b, p), jnp.int32)
  # An action that fits in the turn starts within its first `reach` tokens, so the search for
  # the first `<execute>` stops there: beyond, start = reach + 1 fails every length check.
  reach = length - min(layout.length for layout in params.actions)
  if reach <= 0:
    return ok, mantissa, exponent
  start = _first_true(tokens[:, :reach] == params.execute_id) + 1
  task = params.task[experiments]
  for t, layout in enumerate(params.actions):
    if layout.length > length:  # no action of this task fits in the turns
      continue
    ok_t, mantissa_t, exponent_t = _parse_task(params, layout, params.act_forced[t], tokens,
                                               start)
    take = (task == t) & ok_t
    pad = ((0, 0), (0, p - mantissa_t.shape[1]))
    ok = ok | take
    mantissa = jnp.where(take[:, None], jnp.pad(mantissa_t, pad), mantissa)
    exponent = jnp.where(take[:, None], jnp.pad(exponent_t, pad), exponent)
  return ok, mantissa, exponent


def _query_features(params: EnvParams, experiment, mantissa, exponent):
  """float32[B, P] features of parsed configurations, clipped to the candidates' range."""
  transform = [params.transform[experiment, i] for i in range(4)]  # 4 x [B, P]
  is_log, _, offset, scale = transform
  m = mantissa.astype(jnp.float32)
  k = exponent - 2
  pow10 = jnp.asarray(10.0 ** np.arange(_MAX_POW10 + 1), jnp.float32)[
      jnp.minimum(jnp.abs(k), _MAX_POW10)]
  value = jnp.where(mantissa == 0, 0.0, jnp.where(k >= 0, m * pow10, m / pow10))
  unit = jnp.where(is_log > 0, jnp.asarray(_LOG10_MANTISSA)[mantissa] + k, value)
  # Clipped before the division by the spread (the same features: feature_hi is 0 or 1, and
  # categorical ones have offset 0 and scale 1), which keeps XLA from computing them again
  # for every candidate in `_nearest`.
  shifted = matching.clip_query(unit - offset, params.feature_hi[experiment] * scale,
                                transform, jnp)
  return jnp.where(params.param_mask[experiment], shifted, 0.0) / scale


def _untried(params: EnvParams, state: EnvState) -> Bool[Array, "B N"]:
  """bool[B, N] the valid candidates each episode has not run yet; all valid candidates in an
  episode that has run every one (`matching.not_run`'s rule)."""
  valid = params.valid[state.experiment]
  # Every trial against every candidate (unparsed trials, -1, match none): on the CPU this
  # vectorizes, where a scatter of the trials was measured 15% slower per env step.
  tried = jnp.any(state.history[:, :, None] == np.arange(valid.shape[1]), axis=1)
  left = valid & ~tried
  return jnp.where(jnp.any(left, axis=1, keepdims=True), left, valid)


def _nearest(params: EnvParams, experiment, query, allowed):
  """int32[B] the nearest allowed candidate to each query (`matching.nearest`, batched).

  The distances are summed parameter by parameter over rows of candidates, a loop XLA
  vectorizes; only the slots categorical in some experiment need the categorical rule.
  Args:
    allowed: bool[B, N] the candidates each query may match (`_untried`).
  """
  dist = jnp.where(allowed, 0.0, jnp.inf)
  for j in range(query.shape[1]):
    diff = params.cand_features[experiment, j] - query[:, j, None]
    if j in params.categorical:
      is_cat = params.transform[experiment, 1, j, None] > 0
      dist = dist + jnp.where(is_cat, (jnp.abs(diff) > 1e-9).astype(jnp.float32), diff * diff)
    else:
      dist = dist + diff * diff
  # Compared by their bits (ordered as the floats are, all being >= +0): XLA then keeps the
  # minimum's broadcast out of the reduction, where it would be materialized.
  bits = functools.partial(jax.lax.bitcast_convert_type, new_dtype=jnp.int32)
  return _first_true(bits(dist) == bits(jnp.min(dist, axis=1))[:, None])


def best_regret(params: EnvParams, experiment, best_y):
  """R: the regret (`params.regret_kind`) of a minimized best-so-far; 1 while it is +inf."""
  found = jnp.isfinite(best_y)
  y = jnp.where(found, best_y, params.y_worst[experiment])
  star = params.y_star[experiment]
  if params.regret_kind == "strict":
    r = regret_lib.strict_regret(y, star, params.y_median[experiment])
  else:
    r = regret_lib.normalized_regret(y, star, params.y_worst[experiment])
  return jnp.where(found, r, 1.0)


def reward(params: EnvParams, experiment, best_before, best_after, trial_before, done):
  """The reward of one trial (`params.reward_mode`, see the module docstring).

  Args:
    params: the env params.
    experiment: int32[...] the experiments.
    best_before, best_after: float32[...] the minimized best so far before and after it.
    trial_before: int32[...] trials used before it.
    done: bool[...] whether it was the episode's last.
  """
  regret_after = best_regret(params, experiment, best_after)
  if params.reward_mode == "shaped":
    regret_before = jnp.where(trial_before == 0, 0.0,
                              best_regret(params, experiment, best_before))
    return regret_before - regret_after
  return jnp.where(done, -regret_after, 0.0)


def _feedback(params: EnvParams, experiment, outcome_row, best_row, left):
  """(int32[B, F] tokens, int32[B] lengths) of the feedback blocks: `fb_first`, then the row of
  `fb_second` that continues it, with the trials left in the digit's place."""
  first_len = params.fb_first_len[experiment, outcome_row]
  digit_at = (first_len + params.fb_second_len[experiment, best_row])[:, None]
  position = np.arange(params.feedback_len)
  tokens = jnp.where(
      position < first_len[:, None], params.fb_first[experiment, outcome_row],
      jnp.where(position == digit_at, params.digit_ids[left][:, None],
                params.fb_second[experiment, params.fb_kind[experiment, outcome_row],
                                 best_row]))
  return tokens, digit_at[:, 0] + 1 + params.fb_tail_len


def step(params: EnvParams, state: EnvState, action_tokens: Int[Array, "B L"]
         ) -> tuple[EnvState, Feedback, Float[Array, " B"], Bool[Array, " B"]]:
  """One trial of every episode in the batch.

  Args:
    params: the env params.
    state: the batch of episodes.
    action_tokens: int32[B, L] each episode's turn (reasoning and action), padded.
  Returns:
    (next state, feedback blocks, float32[B] rewards, bool[B] done).
  """
  e = state.experiment
  ok, mantissa, exponent = parse_action(params, e, action_tokens)
  index = _nearest(params, e, _query_features(params, e, mantissa, exponent),
                   _untried(params, state))
  y = params.cand_y[e, index]
  better = ok & (y < state.best_y)
  best_y = jnp.where(better, y, state.best_y)
  best_index = jnp.where(better, index, state.best_index)
  trial = state.trial + 1
  budget = params.budget[e]
  done = trial >= budget
  r = reward(params, e, state.best_y, best_y, state.trial, done)
  none = params.fb_kind.shape[1] - 1
  tokens, length = _feedback(params, e, jnp.where(ok, index, none),
                             jnp.where(best_index >= 0, best_index, none), budget - trial)
  history = jnp.where(jnp.arange(state.history.shape[1]) == state.trial[:, None],
                      jnp.where(ok, index, -1)[:, None], state.history)
  # An episode already done is left as it is.
  keep = state.done
  new = state.replace(
      trial=jnp.where(keep, state.trial, trial),
      best_index=jnp.where(keep, state.best_index, best_index),
      best_y=jnp.where(keep, state.best_y, best_y),
      history=jnp.where(keep[:, None], state.history, history),
      done=keep | done)
  return new, Feedback(tokens, jnp.where(keep, 0, length)), jnp.where(keep, 0.0, r), new.done
