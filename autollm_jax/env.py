"""The environment on the device: pure `reset` / `step` over pytrees, batched, jit-compatible.

An episode configures one experiment: each step takes the agent's turn as tokens, parses the
action after its first `<execute>` token (the canonical tokens of `autollm_jax.grammar`), maps
the proposed configuration to the nearest valid candidate, looks up its outcome, updates the
best so far, and renders the feedback (`autollm_jax.protocol`) as tokens, all on the device.

Matching: each proposed value is turned into its feature (`autollm_jax.matching`: log10 for
log parameters, scaled by the candidates' spread) and, for non-categorical parameters, clipped
to the candidates' range on that axis; the nearest valid candidate is then chosen. An action
that does not parse (no `<execute>`, or tokens off the grammar) uses a trial, is reported as
`none`, and leaves the best unchanged.

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
_MAX_POW10 = 35  # keeps 999 * 10**k finite in float32; larger exponents saturate
# log10 of each mantissa 0..999 (a table is cheaper than log10 on the device); log10(0) is
# -inf, which the clip to the candidates' range turns into their lowest value.
_LOG10_MANTISSA = np.concatenate([[-np.inf], np.log10(np.arange(1, 1000))]).astype(np.float32)


@struct.dataclass
class EnvParams:
  """Every experiment of a batch as device arrays, padded to the largest (E experiments, N
  candidates, P parameters, L action-template tokens, H feedback-head tokens, Y value tokens).

  Attributes:
    cand_features: float32[E, P, N] candidate features (`matching.features`, transposed:
      distances then reduce over the leading axis, which vectorizes well), 0 in padding.
    transform: float32[E, 4, P] `matching.feature_transform` rows; padding (0, 0, 0, 1).
    feature_hi: float32[E, P] largest candidate feature per parameter (clip bound).
    param_mask: bool[E, P] real parameters.
    cand_y: float32[E, N] outcomes in the minimized convention (sign * metric).
    valid: bool[E, N] real candidates.
    y_star, y_worst, y_median: float32[E] `regret.normalizers` of the candidates.
    budget: int32[E] trials per episode.
    task: int32[E] the experiment's task in `grammar`.
    act_forced: int32[E, 2L] L unchecked positions (-1), then the action template after
      `<execute>` (`grammar.ActionTemplate.forced`: -1 at number characters), then -1s.
    act_number_start: int32[E, P] where each parameter's number starts in the template.
    act_len: int32[E] the template's length.
    char_code: int32[V] token -> index in `grammar.CHARS` or -1.
    digit_ids: int32[10] the digit tokens.
    execute_id: int32[] the `<execute>` token.
    fb_head: int32[E, H], fb_head_len: int32[E] tokens of "\\n<obs> {metric}=".
    fb_values: int32[E, N + 1, Y], fb_values_len: int32[E, N + 1] each candidate's outcome
      as tokens; row N is `none`.
    fb_best, fb_left, fb_tail: int32[...] tokens of " best=", " left=", " </obs>\\n".
    pad_id: int32[] the padding token of feedback blocks.
    grammar: the action grammar of the experiments' tasks.
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
  act_forced: Int[Array, "E L2"]
  act_number_start: Int[Array, "E P"]
  act_len: Int[Array, " E"]
  char_code: Int[Array, " V"]
  digit_ids: Int[Array, " 10"]
  execute_id: Int[Array, ""]
  fb_head: Int[Array, "E H"]
  fb_head_len: Int[Array, " E"]
  fb_values: Int[Array, "E N1 Y"]
  fb_values_len: Int[Array, "E N1"]
  fb_best: Int[Array, " Lb"]
  fb_left: Int[Array, " Ll"]
  fb_tail: Int[Array, " Lt"]
  pad_id: Int[Array, ""]
  grammar: grammar_lib.Grammar
  max_budget: int = struct.field(pytree_node=False, default=protocol.MAX_BUDGET)
  reward_mode: str = struct.field(pytree_node=False, default="terminal")
  regret_kind: str = struct.field(pytree_node=False, default="strict")

  @property
  def feedback_len(self) -> int:
    """F: the length of a feedback token block."""
    return (self.fb_head.shape[-1] + 2 * self.fb_values.shape[-1] + self.fb_best.shape[-1] +
            self.fb_left.shape[-1] + 1 + self.fb_tail.shape[-1])


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


def _token_rows(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
  lengths = np.array([len(s) for s in seqs], np.int32)
  return _pad([np.array(s, np.int32) for s in seqs], (int(lengths.max()),), 0, np.int32), lengths


def build_env_params(tables: Sequence[TaskTable] | Mapping[str, TaskTable],
                     experiments: Sequence[Experiment],
                     tokenizer: Tokenizer | grammar_lib.TokenTables, *,
                     reward_mode: str = "terminal", regret_kind: str = "strict") -> EnvParams:
  """EnvParams for `experiments` (host, once).

  Args:
    tables: the TaskTables the experiments refer to (a sequence, or a mapping by name).
    experiments: E experiments; experiment i is index i of `reset`'s experiment ids.
    tokenizer: any Tokenizer (or its already-built TokenTables).
    reward_mode: "terminal" or "shaped" (module docstring).
    regret_kind: "strict" or "normalized".
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
  templates = {n: grammar_lib.ActionTemplate.build(tt, by_name[n].param_names)
               for n in task_names}
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
  y_len = max(len(v) for vs in value_tokens for v in vs)
  fb_values = np.zeros((len(experiments), n + 1, y_len), np.int32)
  fb_values_len = np.zeros((len(experiments), n + 1), np.int32)
  for i, vs in enumerate(value_tokens):
    # Rows 0..n_i-1 are the candidates' outcomes, row n is `none`.
    for j, v in zip(list(range(len(vs) - 1)) + [n], vs):
      fb_values[i, j, :len(v)] = v
      fb_values_len[i, j] = len(v)
  fb_head, fb_head_len = _token_rows(heads)
  ex_templates = [templates[e.task] for e in experiments]
  act_len = max(len(t) for t in ex_templates)
  _, best, left, tail = protocol.feedback_parts("")
  gram = grammar_lib.build_grammar(tt, [by_name[name].param_names for name in task_names])
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
      task=np.array([task_names.index(e.task) for e in experiments], np.int32),
      act_forced=_pad([np.concatenate([np.full(act_len, -1), t.forced]) for t in ex_templates],
                      (2 * act_len,), -1, np.int32),
      act_number_start=_pad([t.number_start for t in ex_templates], (p,), 0, np.int32),
      act_len=np.array([len(t) for t in ex_templates], np.int32),
      char_code=tt.char_code,
      digit_ids=tt.char_ids[:10],
      execute_id=np.int32(tt.marker_ids[protocol.EXECUTE]),
      fb_head=fb_head, fb_head_len=fb_head_len,
      fb_values=fb_values, fb_values_len=fb_values_len,
      fb_best=np.array(tt.template_literal(best), np.int32),
      fb_left=np.array(tt.template_literal(left), np.int32),
      fb_tail=np.array(tt.template_literal(tail), np.int32),
      pad_id=np.int32(tt.tokenizer.pad_id),
      grammar=gram, max_budget=max(e.budget for e in experiments), reward_mode=reward_mode,
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


def parse_action(params: EnvParams, experiments: Int[Array, " B"], tokens: Int[Array, "B L"]
                 ) -> tuple[Bool[Array, " B"], Int[Array, "B P"], Int[Array, "B P"]]:
  """Parses each turn's action: the template after the turn's first `<execute>` token.

  Args:
    params: the env params.
    experiments: int32[B] each turn's experiment (its action template).
    tokens: int32[B, L] the agent's turns.
  Returns:
    (ok bool[B], mantissa int32[B, P] in 0..999, exponent int32[B, P] in -99..99): parameter
    p's value is mantissa * 10**(exponent - 2); zeros for padding parameters or when not ok.
  """
  window = params.act_forced.shape[1] // 2
  if tokens.shape[1] < window:
    tokens = jnp.pad(tokens, ((0, 0), (0, window - tokens.shape[1])), constant_values=-1)
  length = tokens.shape[1]
  # The first `<execute>` (+1), or length + 1 when there is none; a max-reduce vectorizes.
  countdown = jnp.where(tokens == params.execute_id, length - jnp.arange(length), 0)
  start = length + 1 - jnp.max(countdown, axis=1)
  # Contiguous slices rather than per-token gathers: the window starts at most `window`
  # before the end, the action sits `shift` tokens into it, and the template is shifted to
  # match (it has `window` unchecked positions in front).
  begin = jnp.minimum(start, length - window)
  shift = start - begin

  def one(turn, experiment, begin, shift):
    action = jax.lax.dynamic_slice(turn, (begin,), (window,))
    template = jax.lax.dynamic_slice(params.act_forced, (experiment, window - shift),
                                     (1, window))[0]
    literal_ok = jnp.all((template < 0) | (action == template))
    number = jax.vmap(lambda at: jax.lax.dynamic_slice(action, (at,), (_NUMBER_WIDTH,)))(
        params.act_number_start[experiment] + shift)
    return literal_ok, number

  literal_ok, number = jax.vmap(one)(tokens, experiments, begin, shift)  # number: [B, P, 8]
  code = jnp.where(number >= 0, params.char_code[jnp.maximum(number, 0)], -1)
  digit = (code >= 0) & (code <= 9)
  char_class = jnp.where(digit, grammar_lib.DIGIT, jnp.where(
      code == _CODE["."], grammar_lib.POINT, jnp.where(
          code == _CODE["e"], grammar_lib.EXP, jnp.where(
              (code == _CODE["+"]) | (code == _CODE["-"]), grammar_lib.SIGN, -1))))
  fits = char_class == jnp.asarray(grammar_lib.NUMBER_CLASSES)
  mask = params.param_mask[experiments]
  ok = ((start + params.act_len[experiments] <= length) & literal_ok &
        jnp.all(fits | ~mask[..., None], axis=(1, 2)))
  c = jnp.where(digit, code, 0)
  mantissa = 100 * c[..., 0] + 10 * c[..., 2] + c[..., 3]
  exponent = jnp.where(code[..., 5] == _CODE["-"], -1, 1) * (10 * c[..., 6] + c[..., 7])
  mask = mask & ok[:, None]
  return ok, jnp.where(mask, mantissa, 0), jnp.where(mask, exponent, 0)


def _query_features(params: EnvParams, experiment, mantissa, exponent):
  """float32[P] features of a parsed configuration, clipped to the candidates' range."""
  transform = params.transform[experiment]
  is_log, is_cat, offset, scale = transform[0], transform[1], transform[2], transform[3]
  m = mantissa.astype(jnp.float32)
  k = exponent - 2
  pow10 = jnp.asarray(10.0 ** np.arange(_MAX_POW10 + 1), jnp.float32)
  big, small = pow10[jnp.minimum(k, _MAX_POW10)], pow10[jnp.minimum(-k, _MAX_POW10)]
  value = jnp.where(mantissa == 0, 0.0, jnp.where(k >= 0, m * big, m / small))
  unit = jnp.where(is_log > 0, jnp.asarray(_LOG10_MANTISSA)[mantissa] + k, value)
  query = matching.clip_query(jnp.where(is_cat > 0, unit, (unit - offset) / scale),
                              params.feature_hi[experiment], transform, jnp)
  return jnp.where(params.param_mask[experiment], query, 0.0)


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


def _concat(segments, size: int, fill):
  """Concatenates (tokens[n_i], length) segments into int32[size] padded with `fill`."""
  width = max(t.shape[0] for t, _ in segments)
  table = jnp.stack([jnp.pad(t, (0, width - t.shape[0])) for t, _ in segments])
  lengths = jnp.stack([jnp.asarray(n, jnp.int32) for _, n in segments])
  ends = jnp.cumsum(lengths)
  pos = jnp.arange(size)
  segment = jnp.sum(pos[:, None] >= ends[None, :], axis=1)  # which segment each slot is in
  seg = jnp.minimum(segment, len(segments) - 1)
  out = table[seg, pos - (ends[seg] - lengths[seg])]
  return jnp.where(segment < len(segments), out, fill), ends[-1]


def _step_one(params: EnvParams, state: EnvState, ok, mantissa, exponent):
  e = state.experiment
  # Through a (trivial) dot, the query is computed once: otherwise XLA fuses its computation
  # into the candidates-by-parameters distance loop and repeats it per candidate.
  query = _query_features(params, e, mantissa, exponent) @ jnp.eye(mantissa.shape[0])
  index = matching.nearest(params.cand_features[e].T, query, params.transform[e],
                           params.valid[e], xp=jnp).astype(jnp.int32)
  y = params.cand_y[e, index]
  better = ok & (y < state.best_y)
  best_y = jnp.where(better, y, state.best_y)
  best_index = jnp.where(better, index, state.best_index)
  trial = state.trial + 1
  budget = params.budget[e]
  done = trial >= budget
  r = reward(params, e, state.best_y, best_y, state.trial, done)
  none = params.fb_values.shape[1] - 1
  outcome_row = jnp.where(ok, index, none)
  best_row = jnp.where(best_index >= 0, best_index, none)
  one = jnp.int32(1)
  feedback, length = _concat(
      [(params.fb_head[e], params.fb_head_len[e]),
       (params.fb_values[e, outcome_row], params.fb_values_len[e, outcome_row]),
       (params.fb_best, params.fb_best.shape[0]),
       (params.fb_values[e, best_row], params.fb_values_len[e, best_row]),
       (params.fb_left, params.fb_left.shape[0]),
       (params.digit_ids[budget - trial][None], one),
       (params.fb_tail, params.fb_tail.shape[0])],
      params.feedback_len, params.pad_id)
  history = state.history.at[state.trial].set(jnp.where(ok, index, -1), mode="drop")
  # An episode already done is left as it is.
  keep = state.done
  new = state.replace(
      trial=jnp.where(keep, state.trial, trial),
      best_index=jnp.where(keep, state.best_index, best_index),
      best_y=jnp.where(keep, state.best_y, best_y),
      history=jnp.where(keep, state.history, history),
      done=keep | done)
  return new, jnp.where(keep, 0.0, r), feedback, jnp.where(keep, 0, length), new.done


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
  ok, mantissa, exponent = parse_action(params, state.experiment, action_tokens)
  new, reward, tokens, length, done = jax.vmap(_step_one, in_axes=(None, 0, 0, 0, 0))(
      params, state, ok, mantissa, exponent)
  return new, Feedback(tokens, length), reward, done
