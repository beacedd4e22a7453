"""Token tables and the action grammar: what the device needs to know about a tokenizer.

`TokenTables.build(tokenizer)` reads, from any `autollm_jax.tokenizer.Tokenizer`, the token of
each number character (digits, '.', 'e', '+', '-') and of each protocol marker, and fails
with a clear message when one of them is not a single token.

Canonical tokenization. The action and feedback blocks (see `autollm_jax.protocol`) have one
token sequence per text: their literal parts (markers as their single tokens, the rest through
`tokenizer.encode`) and their numbers one token per character. Constrained sampling produces
exactly these tokens and the device renders feedback as exactly these tokens; `encode` gives
the same tokens for any protocol text, so training text matches what the device sees.

The grammar is a finite-state machine over token ids, one sub-machine per task (its parameter
names), all in one `token_fsm.TokenFSM` so a sampler can carry an int state through its decode
loop. A task's machine starts in its free state (reasoning: anything but the environment's and
the prompt's markers and end/padding tokens); the `<execute>` token moves it into the action,
where parameter names are forced and each value is either any number in the PARAM format or,
where the task's values are given, one of them (a trie over their characters); after the
closing marker it is done (only end-of-sequence allowed). Every completed action parses.

Values of several experiments of a task share the task's trie; `live_states` marks the trie
states one experiment's values pass through, so that a sampler masking the others (a token is
allowed when the state it leads to is live) writes only that experiment's values.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Collection, Sequence

import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Int

from autollm_jax import protocol
from autollm_jax import token_fsm
from autollm_jax.tokenizer import Tokenizer

CHARS = "0123456789.e+-"
DIGIT, POINT, EXP, SIGN = 0, 1, 2, 3
# The PARAM format `d.dde[+-]dd`, one character class per position.
NUMBER_CLASSES = (DIGIT, POINT, DIGIT, DIGIT, EXP, SIGN, DIGIT, DIGIT)
CHAR_CLASS = np.array([DIGIT] * 10 + [POINT, EXP, SIGN, SIGN], dtype=np.int32)
_FREE_FORBIDDEN = (protocol.TASK, protocol.TARGET, protocol.CHEAP, protocol.EXECUTE_END,
                   protocol.OBS, protocol.OBS_END)
_ACTION_RE = re.compile(rf"{re.escape(protocol.EXECUTE)}((?: [^ =]+={protocol.PARAM_RE})+) "
                        rf"{re.escape(protocol.EXECUTE_END)}")
_ACTION_FIELD_RE = re.compile(rf" ([^ =]+)=({protocol.PARAM_RE})")
_VALUE = rf"{protocol.OUTCOME_RE}|{protocol.NONE}"
_FEEDBACK_RE = re.compile(rf"\n{re.escape(protocol.OBS)} (.+?)=({_VALUE}) best=({_VALUE}) "
                          rf"left=(\d) {re.escape(protocol.OBS_END)}\n")
_MARKER_RE = re.compile("|".join(re.escape(m) for m in protocol.MARKERS))


def _single_token(tokenizer: Tokenizer, text: str, what: str) -> int:
  try:
    token_id = tokenizer.piece_to_id(text)
  except KeyError:
    token_id = -1
  if not 0 <= token_id < tokenizer.vocab_size or tokenizer.id_to_piece(token_id) != text:
    raise ValueError(f"{type(tokenizer).__name__}: {what} {text!r} is not a single token; the "
                     "environment needs it as one (add it to the tokenizer's vocabulary, e.g. "
                     "as a user-defined or added special token)")
  return token_id


@dataclasses.dataclass(frozen=True)
class TokenTables:
  """The token ids the environment needs, from any Tokenizer.

  Attributes:
    tokenizer: the tokenizer (for the literal text of templates).
    char_ids: int32[14] the token of each character of CHARS.
    char_code: int32[V] for each token id its index in CHARS, or -1.
    marker_ids: the token of each protocol marker.
  """

  tokenizer: Tokenizer
  char_ids: np.ndarray
  char_code: np.ndarray
  marker_ids: dict[str, int]

  @classmethod
  def build(cls, tokenizer: Tokenizer) -> TokenTables:
    char_ids = np.array([_single_token(tokenizer, c, "number character") for c in CHARS],
                        dtype=np.int32)
    char_code = np.full(tokenizer.vocab_size, -1, dtype=np.int32)
    char_code[char_ids] = np.arange(len(CHARS), dtype=np.int32)
    markers = {m: _single_token(tokenizer, m, "protocol marker") for m in protocol.MARKERS}
    return cls(tokenizer, char_ids, char_code, markers)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.vocab_size

  def literal(self, text: str) -> list[int]:
    """Tokens of literal text: markers as their tokens, the text between them encoded."""
    ids, pos = [], 0
    for m in _MARKER_RE.finditer(text):
      ids += self.tokenizer.encode(text[pos:m.start()]) if m.start() > pos else []
      ids.append(self.marker_ids[m.group()])
      pos = m.end()
    return ids + (self.tokenizer.encode(text[pos:]) if pos < len(text) else [])

  def template_literal(self, text: str) -> list[int]:
    """`literal(text)`, checked to decode back to `text` (templates must round-trip)."""
    ids = self.literal(text)
    if self.tokenizer.decode(ids) != text:
      raise ValueError(f"{type(self.tokenizer).__name__} does not round-trip the protocol text "
                       f"{text!r} (decodes to {self.tokenizer.decode(ids)!r})")
    return ids

  def number(self, text: str) -> list[int]:
    """One token per character of a number (PARAM or OUTCOME format, or a digit)."""
    return [int(self.char_ids[CHARS.index(c)]) for c in text]

  def value(self, text: str) -> list[int]:
    """Tokens of a feedback field: a number, or the literal `none`."""
    return self.literal(text) if text == protocol.NONE else self.number(text)

  def encode(self, text: str) -> list[int]:
    """The canonical tokens of protocol text (whole episodes or parts of them)."""
    ids, pos = [], 0
    blocks = sorted(list(_ACTION_RE.finditer(text)) + list(_FEEDBACK_RE.finditer(text)),
                    key=lambda m: m.start())
    for m in blocks:
      ids += self.literal(text[pos:m.start()])
      ids += self._action(m) if m.re is _ACTION_RE else self._feedback(m)
      pos = m.end()
    return ids + self.literal(text[pos:])

  def _action(self, match: re.Match) -> list[int]:
    names, values = zip(*_ACTION_FIELD_RE.findall(match.group(1)))
    parts = protocol.action_parts(names)
    return sum((self.literal(p) + self.number(v) for p, v in zip(parts, values)), []) + \
        self.literal(parts[-1])

  def _feedback(self, match: re.Match) -> list[int]:
    metric, outcome, best, left = match.groups()
    p = protocol.feedback_parts(metric)
    return (self.literal(p[0]) + self.value(outcome) + self.literal(p[1]) + self.value(best) +
            self.literal(p[2]) + self.number(left) + self.literal(p[3]))


@dataclasses.dataclass(frozen=True)
class ActionTemplate:
  """The tokens of a task's action after `<execute>`, position by position.

  Attributes:
    forced: int32[L] the token forced at each position, or -1 where a number character goes.
    char_class: int32[L] the character class (DIGIT, POINT, EXP, SIGN) there, or -1.
    number_start: int32[P] the position of each parameter's first number character.
  """

  forced: np.ndarray
  char_class: np.ndarray
  number_start: np.ndarray

  @classmethod
  def build(cls, tables: TokenTables, param_names: Sequence[str]) -> ActionTemplate:
    parts = [tables.template_literal(p) for p in protocol.action_parts(param_names)]
    parts[0] = parts[0][1:]  # the <execute> token itself starts the action
    forced, classes, starts = [], [], []
    for part in parts[:-1]:
      forced += part + [-1] * len(NUMBER_CLASSES)
      classes += [-1] * len(part) + list(NUMBER_CLASSES)
      starts.append(len(forced) - len(NUMBER_CLASSES))
    forced += parts[-1]
    classes += [-1] * len(parts[-1])
    return cls(np.array(forced, np.int32), np.array(classes, np.int32),
               np.array(starts, np.int32))

  def __len__(self) -> int:
    return len(self.forced)


@struct.dataclass
class Grammar:
  """The action grammar of several tasks as one finite-state machine (module docstring).

  Attributes:
    fsm: the transition tables over S states.
    is_done: bool[S] whether the action is complete in a state.
    in_value: bool[S] the states inside a value trie (after a value's first character).
    free_state: int32[T] each task's start state (free reasoning).
    action_state: int32[T] each task's state just after `<execute>`.
    value_start: int32[T, P] the state where each parameter's value begins (-1: no such
      parameter).
  """

  fsm: token_fsm.TokenFSM
  is_done: Bool[Array, " S"]
  in_value: Bool[Array, " S"]
  free_state: Int[Array, " T"]
  action_state: Int[Array, " T"]
  value_start: Int[Array, "T P"]


class _Machine:
  """States as edge maps (token -> next state), made into the FSM's tables at the end."""

  def __init__(self):
    self.edges: list[dict[int, int]] = []
    self.in_value: list[bool] = []

  def new(self, in_value: bool = False) -> int:
    self.edges.append({})
    self.in_value.append(in_value)
    return len(self.edges) - 1

  def literal(self, starts: Sequence[int], tokens: Sequence[int]) -> int:
    """Forced tokens from any of `starts`; returns the state after them."""
    for token in tokens:
      after = self.new()
      for s in starts:
        self.edges[s][token] = after
      starts = [after]
    return starts[0]

  def number(self, start: int, tables: TokenTables, values: Collection[str] | None
             ) -> list[int]:
    """A PARAM number from `start`: one of `values` (a trie whose leaves stay apart so that a
    value's last character can be masked), or any number (a chain of character classes).
    Returns the states after the number."""
    if values is None:
      state = start
      for char_class in NUMBER_CLASSES:
        after = self.new()
        for token in tables.char_ids[CHAR_CLASS == char_class]:
          self.edges[state][int(token)] = after
        state = after
      return [state]
    nodes = {"": start}
    for value in sorted(set(values)):
      if not re.fullmatch(protocol.PARAM_RE, value):
        raise ValueError(f"grammar value {value!r} is not in the PARAM format d.dde[+-]dd")
      for i in range(1, len(value) + 1):
        if value[:i] not in nodes:
          nodes[value[:i]] = self.new(in_value=True)
          self.edges[nodes[value[:i - 1]]][tables.number(value[i - 1])[0]] = nodes[value[:i]]
    return [nodes[v] for v in sorted(set(values))]


def build_grammar(tables: TokenTables, tasks: Sequence[Sequence[str]],
                  values: Sequence[Sequence[Collection[str]] | None] | None = None
                  ) -> Grammar:
  """The grammar of every task (NumPy arrays; `jax.device_put` it for the device).

  Args:
    tables: the tokenizer's tables.
    tasks: for each task, its parameter names in order.
    values: optional, for each task (None: any numbers) the PARAM strings each parameter may
      take, in the order of its names (e.g. the values of its candidates).
  """
  v = tables.vocab_size
  tok = tables.tokenizer
  free_allowed = np.ones(v, bool)
  free_allowed[[tables.marker_ids[m] for m in _FREE_FORBIDDEN]] = False
  free_allowed[[i for i in (tok.eos_id, tok.pad_id, tok.bos_id) if 0 <= i < v]] = False
  machine = _Machine()
  free_states, action_states, done_states, value_starts = [], [], [], []
  for t, names in enumerate(tasks):
    task_values = [None] * len(names) if values is None or values[t] is None else values[t]
    if len(task_values) != len(names):
      raise ValueError(f"grammar values of task {t} have {len(task_values)} parameters, its "
                       f"names {len(names)}")
    parts = [tables.template_literal(p) for p in protocol.action_parts(names)]
    free_states.append(machine.new())
    action_states.append(machine.new())
    ends, starts = [action_states[-1]], []
    for part, param_values in zip(parts, task_values):
      starts.append(machine.literal(ends, part[1:] if not starts else part))
      ends = machine.number(starts[-1], tables, param_values)
    done_states.append(machine.literal(ends, parts[-1]))
    value_starts.append(starts)
  free_row, done_row = 1, 2
  rows = np.stack([np.zeros(v, bool), free_allowed, np.arange(v) == tok.eos_id])
  row = np.zeros(len(machine.edges), np.int32)
  row[free_states], row[done_states] = free_row, done_row
  for free, action in zip(free_states, action_states):
    machine.edges[free][tables.marker_ids[protocol.EXECUTE]] = action
  is_done = np.zeros(len(machine.edges), bool)
  is_done[done_states] = True
  width = max(len(s) for s in value_starts)
  return Grammar(token_fsm.TokenFSM.from_edges(machine.edges, row, rows), is_done,
                 np.array(machine.in_value), np.array(free_states, np.int32),
                 np.array(action_states, np.int32),
                 np.array([s + [-1] * (width - len(s)) for s in value_starts], np.int32))


def live_states(grammar: Grammar, tables: TokenTables, task: int,
                values: Sequence[Sequence[str]]) -> np.ndarray:
  """bool[S] the states a sequence of one experiment may enter: every state outside the value
  tries, and the trie states that `values` (its PARAM strings per parameter of task `task`,
  each among the grammar's) pass through.

  Raises:
    ValueError: a value the grammar's trie does not hold.
  """
  live = ~np.asarray(grammar.in_value)
  for start, param_values in zip(np.asarray(grammar.value_start)[task], values):
    for value in param_values:
      state = int(start)
      for token in tables.number(value):
        after = token_fsm.advance_np(grammar.fsm, state, token)
        if after == state:
          raise ValueError(f"value {value!r} is not among the grammar's values of task {task}")
        state = after
        live[state] = True
  return live


def advance(grammar: Grammar, state, token):
  """The state after `token` (int arrays of one shape)."""
  return token_fsm.advance(grammar.fsm, state, token)


def is_complete(grammar: Grammar, state):
  """Whether the action is complete (its closing marker emitted) in `state`."""
  return grammar.is_done[state]
