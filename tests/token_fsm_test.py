"""Tests for autollm_jax.token_fsm: the compact tables against dense transition tables."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax import token_fsm


def _random_machine(rng: np.random.Generator, states: int, vocab: int
                    ) -> tuple[token_fsm.TokenFSM, np.ndarray, np.ndarray]:
  """A random compact machine and its dense tables, built independently of the module.

  Returns (fsm, allowed bool[S, V], next_state int32[S, V]). No edge loops back to its state,
  so the dense tables tell the edges apart: next_state[s, v] != s.
  """
  rows = rng.random((3, vocab)) < 0.3
  row = rng.integers(0, 3, states)
  edges = []
  for _ in range(states):
    tokens = rng.choice(vocab, size=rng.integers(0, 5), replace=False)
    edges.append({int(t): int(rng.integers(states - 1)) for t in tokens})
    edges[-1] = {t: n + (n >= len(edges) - 1) for t, n in edges[-1].items()}  # skip itself
  allowed = rows[row].copy()
  next_state = np.tile(np.arange(states, dtype=np.int32)[:, None], (1, vocab))
  for s, e in enumerate(edges):
    for token, nxt in e.items():
      allowed[s, token] = True
      next_state[s, token] = nxt
  return token_fsm.TokenFSM.from_edges(edges, row, rows), allowed, next_state


class TokenFsmTest(absltest.TestCase):

  def test_matches_dense_tables(self):
    rng = np.random.default_rng(0)
    fsm, allowed, next_state = _random_machine(rng, states=40, vocab=50)
    device_fsm = jax.tree.map(jnp.asarray, fsm)
    state = jnp.arange(40, dtype=jnp.int32)
    np.testing.assert_array_equal(token_fsm.allowed_tokens(device_fsm, state), allowed)
    for s in range(40):
      np.testing.assert_array_equal(token_fsm.allowed_np(fsm, s), allowed[s])
    tokens = rng.integers(0, 50, (40, 7))
    got = token_fsm.advance(device_fsm, jnp.tile(state[:, None], (1, 7)), jnp.asarray(tokens))
    np.testing.assert_array_equal(got, next_state[np.arange(40)[:, None], tokens])
    self.assertEqual(token_fsm.advance_np(fsm, 3, int(tokens[3, 0])),
                     next_state[3, tokens[3, 0]])

  def test_live_states_mask_the_edges_into_them(self):
    rng = np.random.default_rng(1)
    fsm, allowed, next_state = _random_machine(rng, states=30, vocab=40)
    live = rng.random((30, 30)) < 0.5  # per row b, the states it may enter
    state = rng.integers(0, 30, 30)
    got = token_fsm.allowed_tokens(jax.tree.map(jnp.asarray, fsm), jnp.asarray(state),
                                   jnp.asarray(live))
    is_edge = next_state[state] != state[:, None]
    expected = allowed[state] & (~is_edge | live[np.arange(30)[:, None], next_state[state]])
    np.testing.assert_array_equal(got, expected)
    for b in range(30):
      np.testing.assert_array_equal(token_fsm.allowed_np(fsm, state[b], live[b]), expected[b])

  def test_tables_scale_with_edges_not_states_times_vocabulary(self):
    vocab = 262_144
    chain = [{7: s + 1} for s in range(999)] + [{}]
    fsm = token_fsm.TokenFSM.from_edges(chain, [0] * 1000, np.zeros((1, vocab), bool))
    nbytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(fsm))
    self.assertLess(nbytes, 300_000)  # dense int32 + bool tables: 1.3 GB
    self.assertEqual(token_fsm.advance_np(fsm, 998, 7), 999)
    self.assertEqual(token_fsm.advance_np(fsm, 999, 7), 999)

  def test_bad_tables_raise(self):
    with self.assertRaisesRegex(ValueError, "outside 0..1"):
      token_fsm.TokenFSM.from_edges([{1: 2}, {}], [0, 0], np.zeros((1, 4), bool))
    with self.assertRaisesRegex(ValueError, "row index"):
      token_fsm.TokenFSM.from_edges([{1: 1}, {}], [0, 1], np.zeros((1, 4), bool))


if __name__ == "__main__":
  absltest.main()
