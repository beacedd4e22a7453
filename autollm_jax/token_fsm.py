"""A token-level finite-state machine in compact tables, for constrained decoding on a device.

Each state s allows
  - the tokens of one shared row, `rows[row[s]]` (e.g. free text, or end-of-sequence only),
    which leave the machine in s, and
  - up to K tokens of its own, `edge_token[s]`, each moving it to `edge_next[s]` (an edge
    overrides the row for its token).
The states of an action grammar allow a forced literal token or a few number characters, so
the tables take S * K + R * V entries where dense transition tables take S * V: for Gemma 3's
262,144-token vocabulary and the 11,124 states of mixture_admire's value tries, 1.7 MiB
instead of 13.6 GiB.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Int

NO_EDGE = -1


@struct.dataclass
class TokenFSM:
  """Compact transition tables (module docstring).

  Attributes:
    edge_token: int32[S, K] each state's own tokens (NO_EDGE where unused).
    edge_next: int32[S, K] the state each of them leads to.
    row: int32[S] each state's row of `rows`.
    rows: bool[R, V] shared token sets that keep the state.
  """

  edge_token: Int[Array, "S K"]
  edge_next: Int[Array, "S K"]
  row: Int[Array, " S"]
  rows: Bool[Array, "R V"]

  @property
  def num_states(self) -> int:
    return self.row.shape[0]

  @property
  def vocab_size(self) -> int:
    return self.rows.shape[1]

  @classmethod
  def from_edges(cls, edges: Sequence[dict[int, int]], row: Sequence[int],
                 rows: np.ndarray) -> TokenFSM:
    """NumPy tables from each state's edges (token -> next state) and row index.

    Raises:
      ValueError: an edge to a state that does not exist, or a row index out of range.
    """
    width = max(1, max(len(e) for e in edges))
    edge_token = np.full((len(edges), width), NO_EDGE, np.int32)
    edge_next = np.tile(np.arange(len(edges), dtype=np.int32)[:, None], (1, width))
    for s, e in enumerate(edges):
      edge_token[s, :len(e)] = list(e)
      edge_next[s, :len(e)] = list(e.values())
    row = np.asarray(row, np.int32)
    if edge_next.size and not 0 <= edge_next.min() <= edge_next.max() < len(edges):
      raise ValueError(f"an edge leads to a state outside 0..{len(edges) - 1}")
    if row.size and not 0 <= row.min() <= row.max() < len(rows):
      raise ValueError(f"a state's row index is outside 0..{len(rows) - 1}")
    return cls(edge_token, edge_next, row, np.asarray(rows, bool))


def allowed_tokens(fsm: TokenFSM, state: Int[Array, " B"],
                   live: Bool[Array, "B S"] | None = None) -> Bool[Array, "B V"]:
  """bool[B, V] the tokens allowed in each row's state.

  Args:
    fsm: the tables (JAX, or NumPy as `build_grammar` gives them).
    state: int32[B] each row's state.
    live: optional bool[B, S] the states each row may enter; an edge to a state that is not
      live is not allowed.
  """
  tokens = jnp.asarray(fsm.edge_token[state])
  ok = tokens != NO_EDGE
  if live is not None:
    ok &= jnp.take_along_axis(live, jnp.asarray(fsm.edge_next[state]), axis=1)
  allowed = jnp.asarray(fsm.rows[fsm.row[state]])
  vocab = allowed.shape[1]
  # Unused edges scatter out of range and are dropped.
  columns = jnp.where(tokens == NO_EDGE, vocab, tokens)
  return allowed.at[jnp.arange(len(state))[:, None], columns].set(ok, mode="drop")


def advance(fsm: TokenFSM, state: Int[Array, "..."], token: Int[Array, "..."]
            ) -> Int[Array, "..."]:
  """The state after `token` (int arrays of one shape); a token without an edge keeps it."""
  match = fsm.edge_token[state] == jnp.asarray(token)[..., None]
  nxt = jnp.take_along_axis(fsm.edge_next[state], jnp.argmax(match, -1)[..., None], -1)[..., 0]
  return jnp.where(match.any(-1), nxt, state)


def allowed_np(fsm: TokenFSM, state: int, live: np.ndarray | None = None) -> np.ndarray:
  """bool[V] `allowed_tokens` for one state, as a NumPy array (host-side walks).

  Args:
    live: optional bool[S], that state's row of `allowed_tokens`' live.
  """
  batch_live = None if live is None else jnp.asarray(live)[None]
  return np.asarray(allowed_tokens(fsm, jnp.asarray([state]), batch_live))[0]


def advance_np(fsm: TokenFSM, state: int, token: int) -> int:
  """`advance` from one state in NumPy: `grammar.live_states` walks every value of every
  experiment this way, where a device call per character would dominate the build."""
  hit = np.flatnonzero(np.asarray(fsm.edge_token[state]) == token)
  return int(fsm.edge_next[state, hit[0]]) if hit.size else int(state)
