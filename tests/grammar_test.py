"""Token tables, canonical tokens of protocol text, and the action grammar."""

import io
import re

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm

from autollm_jax import grammar
from autollm_jax import protocol
from autollm_jax import sp_tokenizer
from autollm_jax import token_fsm

_TASKS = (("lr", "bs"), ("embed_dim", "n_layer", "bias"), ("ratio_flan_v2", "ratio_code"))


def _corpus() -> list[str]:
  rng = np.random.default_rng(0)
  texts = []
  for names in _TASKS * 30:
    values = 10.0 ** rng.uniform(-3, 3, size=len(names))
    texts.append(protocol.render_turn("reasoning about the cheap runs", names, values) +
                 protocol.render_feedback("smooth loss", -rng.random(), None, 2))
  return texts


class GrammarTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tok = sp_tokenizer.train_sentencepiece(_corpus(), vocab_size=400)
    cls.tables = grammar.TokenTables.build(cls.tok)
    cls.gram = grammar.build_grammar(cls.tables, _TASKS)

  def test_token_tables(self):
    t = self.tables
    self.assertEqual([self.tok.id_to_piece(i) for i in t.char_ids], list(grammar.CHARS))
    self.assertEqual(t.char_code.shape, (self.tok.vocab_size,))
    np.testing.assert_array_equal(t.char_code[t.char_ids], np.arange(len(grammar.CHARS)))
    self.assertEqual(np.sum(t.char_code >= 0), len(grammar.CHARS))
    self.assertEqual(t.marker_ids[protocol.OBS], self.tok.piece_to_id("<obs>"))

  def test_tables_need_single_token_markers(self):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus()), model_writer=model,
                                   vocab_size=300, hard_vocab_limit=False, minloglevel=2)
    plain = sp_tokenizer.SentencePieceTokenizer(model.getvalue())
    with self.assertRaisesRegex(ValueError, "protocol marker '<task>' is not a single token"):
      grammar.TokenTables.build(plain)

  def test_canonical_tokens_of_an_episode(self):
    text = ("<task> t\n" + protocol.render_turn("so lr=3 maybe", ["lr", "bs"], [1.5e-3, 64]) +
            protocol.render_feedback("smooth loss", 2.25, 2.25, 4) +
            protocol.render_turn("", ["lr", "bs"], [2e-3, 0]) +
            protocol.render_feedback("smooth loss", None, 2.25, 3))
    ids = self.tables.encode(text)
    self.assertEqual(self.tok.decode(ids), text)
    pieces = [self.tok.id_to_piece(i) for i in ids]
    # Inside the action and feedback blocks every number is one token per character.
    for number in ("1.50e-03", "6.40e+01", "2.2500e+00", "0.00e+00"):
      self.assertIn(list(number), [pieces[i:i + len(number)] for i in range(len(pieces))])
    self.assertEqual(pieces.count("<execute>"), 2)
    self.assertIn("none", "".join(pieces))

  def test_action_template(self):
    template = grammar.ActionTemplate.build(self.tables, ["lr", "bs"])
    self.assertLen(template.number_start, 2)
    for start in template.number_start:
      np.testing.assert_array_equal(template.forced[start:start + 8], -1)
      np.testing.assert_array_equal(template.char_class[start:start + 8],
                                    grammar.NUMBER_CLASSES)
    closing = template.forced[template.number_start[-1] + 8:]
    self.assertEqual(self.tok.decode(closing), " </execute>")

  def test_machine_shape_and_states(self):
    g = self.gram
    v = self.tok.vocab_size
    s = g.fsm.num_states
    self.assertEqual(g.fsm.vocab_size, v)
    self.assertEqual(g.is_done.shape, (s,))
    # Shared rows: nothing, free text, end-of-sequence; edges: at most the 14 number characters.
    self.assertEqual(g.fsm.rows.shape, (3, v))
    self.assertEqual(g.fsm.edge_token.shape[0], s)
    self.assertLessEqual(g.fsm.edge_token.shape[1], len(grammar.CHARS))
    self.assertEqual(g.fsm.edge_next.dtype, np.int32)
    free = g.free_state[0]
    execute = self.tables.marker_ids[protocol.EXECUTE]
    self.assertEqual(token_fsm.advance_np(g.fsm, free, execute), g.action_state[0])
    allowed = token_fsm.allowed_np(g.fsm, free)
    for forbidden in (protocol.OBS, protocol.EXECUTE_END, protocol.TASK):
      self.assertFalse(allowed[self.tables.marker_ids[forbidden]])
    self.assertFalse(allowed[self.tok.eos_id])
    self.assertTrue(allowed[self.tables.marker_ids[protocol.THINK_END]])
    self.assertEqual(token_fsm.advance_np(g.fsm, free, self.tables.marker_ids[protocol.THINK]),
                     free)
    done = np.flatnonzero(g.is_done)
    self.assertLen(done, len(_TASKS))
    np.testing.assert_array_equal(np.flatnonzero(token_fsm.allowed_np(g.fsm, done[0])),
                                  [self.tok.eos_id])

  def test_random_constrained_walks_always_give_a_parseable_action(self):
    rng = np.random.default_rng(1)
    g = self.gram
    for trial in range(60):
      task = trial % len(_TASKS)
      state, tokens = int(g.free_state[task]), []
      while not grammar.is_complete(g, state):
        allowed = np.flatnonzero(token_fsm.allowed_np(g.fsm, state))
        if len(tokens) == 6 and state == g.free_state[task]:
          allowed = [self.tables.marker_ids[protocol.EXECUTE]]
        tokens.append(int(rng.choice(allowed)))
        state = int(grammar.advance(g, state, tokens[-1]))
      text = self.tok.decode(tokens)
      fields = "".join(f" {n}=({protocol.PARAM_RE})" for n in _TASKS[task])
      self.assertRegex(text, f"<execute>{fields} </execute>$")
      action = text[text.index("<execute>"):]
      self.assertEqual(self.tables.encode(action), tokens[len(tokens) -
                                                          len(self.tables.encode(action)):])

  def _walk(self, g, task, rng, live=None):
    """The text of a random walk from the task's free state (reasoning cut off after 6
    tokens), taking only tokens that lead to live states where `live` is given."""
    state, tokens = int(g.free_state[task]), []
    while not grammar.is_complete(g, state):
      allowed = np.flatnonzero(token_fsm.allowed_np(g.fsm, state, live))
      if len(tokens) == 6 and state == g.free_state[task]:
        allowed = [self.tables.marker_ids[protocol.EXECUTE]]
      tokens.append(int(rng.choice(allowed)))
      state = int(grammar.advance(g, state, tokens[-1]))
    return self.tok.decode(tokens)

  def test_values_constrain_each_parameter_to_its_strings(self):
    values = [["1.00e-03", "1.50e-03", "2.00e-02"], ["3.20e+01", "6.40e+01"]]
    g = grammar.build_grammar(self.tables, _TASKS[:2], [values, None])
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(80):
      lr, bs = protocol.parse_action(self._walk(g, 0, rng), _TASKS[0])
      self.assertIn(lr, values[0])
      self.assertIn(bs, values[1])
      seen.add((lr, bs))
    self.assertLen(seen, 6)  # every combination is reachable
    # The task without values still takes any number.
    numbers = [protocol.parse_action(self._walk(g, 1, rng), _TASKS[1]) for _ in range(20)]
    self.assertGreater(len({n[0] for n in numbers}), 10)
    np.testing.assert_array_equal(g.value_start[1] >= 0, [True, True, True])
    # Only the number characters enter a trie.
    enters = (g.fsm.edge_token != token_fsm.NO_EDGE) & g.in_value[g.fsm.edge_next]
    self.assertTrue(enters.any())
    self.assertTrue(np.isin(g.fsm.edge_token[enters], self.tables.char_ids).all())
    self.assertEqual(g.value_start[0, 2], -1)

  def test_live_states_keep_one_experiments_values(self):
    values = [["1.00e-03", "1.50e-03", "2.00e-02"], ["3.20e+01", "6.40e+01"]]
    g = grammar.build_grammar(self.tables, _TASKS[:1], [values])
    mine = [["1.50e-03", "2.00e-02"], ["6.40e+01"]]
    live = grammar.live_states(g, self.tables, 0, mine)
    self.assertTrue(live[g.free_state[0]] and live[g.action_state[0]])
    rng = np.random.default_rng(4)
    seen = {protocol.parse_action(self._walk(g, 0, rng, live), _TASKS[0]) for _ in range(40)}
    self.assertEqual(seen, {("1.50e-03", "6.40e+01"), ("2.00e-02", "6.40e+01")})
    with self.assertRaisesRegex(ValueError, "'1.20e-03' is not among the grammar's values"):
      grammar.live_states(g, self.tables, 0, [["1.20e-03"], []])
    with self.assertRaisesRegex(ValueError, "'0.001' is not in the PARAM format"):
      grammar.build_grammar(self.tables, _TASKS[:1], [[["0.001"], ["3.20e+01"]]])

  def test_a_jitted_sampler_can_carry_the_state(self):
    g = jax.device_put(self.gram)

    @jax.jit
    def sample(key, task):
      def cond(c):
        return ~grammar.is_complete(g, c[1]) & (c[2] < 300)

      def body(c):
        key, state, n, out = c
        key, sub = jax.random.split(key)
        logits = jax.random.normal(sub, (g.fsm.vocab_size,))
        logits = jnp.where(n > 10, logits.at[self.tables.marker_ids["<execute>"]].add(100),
                           logits)
        allowed = token_fsm.allowed_tokens(g.fsm, state[None])[0]
        token = jnp.argmax(jnp.where(allowed, logits, -jnp.inf))
        return key, grammar.advance(g, state, token), n + 1, out.at[n].set(token)

      return jax.lax.while_loop(cond, body, (key, g.free_state[task], 0,
                                             jnp.zeros(300, jnp.int32)))

    for task in range(len(_TASKS)):
      _, state, n, out = sample(jax.random.key(task), task)
      self.assertTrue(grammar.is_complete(g, state))
      text = self.tok.decode(np.asarray(out[:n]))
      self.assertTrue(re.search(r"<execute>.* </execute>$", text), text)


if __name__ == "__main__":
  absltest.main()
