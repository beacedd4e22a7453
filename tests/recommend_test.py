"""Tests of recommend's ask/tell session (autollm_jax/agents/session.py, launch/recommend.py)."""

import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flax import nnx

from autollm_jax import checkpoint
from autollm_jax import evaluation
from autollm_jax import protocol
from autollm_jax import sp_tokenizer
from autollm_jax.agents import policy
from autollm_jax.agents import session
from autollm_jax.model import config as model_config
from autollm_jax.model import transformer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write_cheap_csv(path: pathlib.Path) -> None:
  """The synthetic task's four cheapest fidelities as a user's CSV (N=1e8..8e8)."""
  table = evaluation.synthetic_table(num_fidelities=4)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["N", "lr", "bs", "loss"])
    for i in range(table.num_rows):
      w.writerow([table.fidelity_scale[table.fidelity_index[i], 0], *table.configs[i],
                  table.outcomes[i, 0]])


class RecommendTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = pathlib.Path(tempfile.mkdtemp())
    self.csv = self.dir / "runs.csv"
    _write_cheap_csv(self.csv)
    self.state = self.dir / "state.json"
    self.table = evaluation.synthetic_table(num_fidelities=4)
    self.obs = session.target_observation(self.table, np.array([1.6e9]),
                                          session.default_grid(self.table))

  def _run(self, *extra):
    cmd = [sys.executable, str(ROOT / "launch" / "recommend.py"), f"--csv={self.csv}",
           "--params=lr:log,bs:log", "--fidelities=N", "--metric=loss:min",
           "--target=N=1.6e9", f"--state={self.state}", "--top=3", *extra]
    env = {**os.environ, "AUTOLLM_CACHE_DIR": str(self.dir / "cache"), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

  def _save_policy(self) -> pathlib.Path:
    """A small random policy's checkpoint directory, its vocabulary trained on this target's
    prompt and a turn (what launch/train.py writes, but untrained)."""
    table, experiment = policy.observation_problem(self.obs)
    text = [protocol.render_prompt(table, experiment, 3),
            protocol.render_turn(policy.TOLD_REASONING, table.param_names, [1e-3, 64.0]) +
            protocol.render_feedback("loss", 3.0, 3.0, 1)]
    tok = sp_tokenizer.train_sentencepiece(text * 20, vocab_size=512)
    config = model_config.get_config(
        "scratch_1m", vocab_size=tok.vocab_size, embed_dim=32, num_layers=2, num_heads=2,
        num_kv_heads=1, head_dim=16, mlp_dim=64)
    _, params = nnx.split(transformer.create_model(config, 0))
    directory = self.dir / "policy"
    manager = checkpoint.CheckpointManager(directory)
    manager.save(1, params, None, config, tok.to_blob())
    manager.close()
    policy.PolicySettings(max_prompt_rows=3, max_context_fidelities=1, turn_tokens=80,
                          think_tokens=8, temperature=1.0).save(directory)
    return directory

  def test_a_trained_policy_proposes_the_next_run_from_its_checkpoint(self):
    directory = self._save_policy()
    first = self._run(f"--checkpoint={directory}")
    self.assertEqual(first.returncode, 0, first.stderr)
    wrote = first.stdout.split(f"policy ({directory}) wrote: ")[1]
    self.assertIn(protocol.EXECUTE, wrote)  # the grammar forces an action into the turn
    proposal = first.stdout.split("next run: ")[1].split()[0]
    self.assertEqual(json.loads(self.state.read_text())["proposal"]["turn"],
                     wrote.split("\n")[0])
    # A grid configuration, which the session accepts as a tell; the next one is another,
    # and the policy's turn is kept with the result.
    told = self._run(f"--checkpoint={directory}", f"--tell={proposal}=2.5")
    self.assertEqual(told.returncode, 0, told.stderr)
    self.assertIn(f"told: {proposal} -> 2.5", told.stdout)
    self.assertEqual(json.loads(self.state.read_text())["trials"][0]["turn"],
                     wrote.split("\n")[0])
    self.assertNotEqual(told.stdout.split("next run: ")[1].split()[0], proposal)
    missing = self._run(f"--checkpoint={self.dir / 'nowhere'}")
    self.assertNotEqual(missing.returncode, 0)
    self.assertIn("error:", missing.stderr)

  def _first_proposal(self, stdout: str) -> str:
    line = next(l for l in stdout.splitlines() if l.strip().startswith("1 "))
    return line.split()[-1]

  def test_ask_tell_round_trip_and_bad_tell(self):
    first = self._run()
    self.assertEqual(first.returncode, 0, first.stderr)
    self.assertIn("reasoning: optimal lr", first.stdout)
    proposal = self._first_proposal(first.stdout)
    self.assertEqual(json.loads(self.state.read_text())["trials"], [])

    told = self._run(f"--tell={proposal}=2.5")
    self.assertEqual(told.returncode, 0, told.stderr)
    self.assertIn(f"told: {proposal} -> 2.5", told.stdout)
    self.assertNotEqual(self._first_proposal(told.stdout), proposal)  # the next one
    saved = self.state.read_text()
    self.assertLen(json.loads(saved)["trials"], 1)

    # A bad tell after a good one: the call fails with the reason and saves neither.
    result = self._run(f"--tell={proposal}=2.4", "--tell=lr=0.5,bs=64=2.5")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("not in the grid", result.stderr)
    self.assertEqual(self.state.read_text(), saved)

  @parameterized.parameters(("lr=0.001,bs=64", "is not NAME=NUMBER"),
                            ("2.5", "not CONFIG=OUTCOME"),
                            ("lr=0.001,bs=64=abc", "not a number"),
                            ("lr=0.001,depth=3,bs=64=2.5", "unknown parameter"),
                            ("lr=0.5,bs=64=2.5", "not in the grid"),
                            ("lr=0.001=2.5", "lacks bs"))
  def test_bad_tells_are_refused_whole(self, bad, message):
    state = session.new_state(self.obs)
    good = f"{session.config_text(self.obs, self.obs.candidates[7])}=2.4"
    with self.assertRaisesRegex(session.SessionError, message):
      session.tell(state, self.obs, [good, bad])
    self.assertEqual(state["trials"], [])

  def test_tell_maps_to_the_grid_and_keeps_state_immutable(self):
    state = session.new_state(self.obs)
    text = session.config_text(self.obs, self.obs.candidates[7])
    new = session.tell(state, self.obs, [f"{text}=2.25"])
    self.assertEqual(state["trials"], [])
    trials = session.history(new, self.obs)
    self.assertEqual(trials[0].candidate, 7)
    self.assertEqual(trials[0].outcome, 2.25)

  def test_a_told_proposal_keeps_the_policy_s_turn(self):
    state = session.with_proposal(session.new_state(self.obs), self.obs, 7, "<think> a </think>")
    other = session.config_text(self.obs, self.obs.candidates[3])
    proposed = session.config_text(self.obs, self.obs.candidates[7])
    state = session.tell(state, self.obs, [f"{other}=2.5"])
    self.assertEqual(session.told_turns(state), [None])
    self.assertIn("proposal", state)  # still waiting for its result
    state = session.tell(state, self.obs, [f"{proposed}=2.4"])
    self.assertEqual(session.told_turns(state), [None, "<think> a </think>"])
    self.assertNotIn("proposal", state)

  def test_state_of_another_target_is_refused(self):
    session.save_state(self.state, session.new_state(self.obs))
    other = session.target_observation(self.table, np.array([3.2e9]), self.obs.candidates)
    with self.assertRaisesRegex(session.SessionError, "use another --state"):
      session.load_state(self.state, other)

  def test_target_needs_cheaper_runs(self):
    with self.assertRaisesRegex(session.SessionError, "cheaper than the target"):
      session.target_observation(self.table, np.array([1e7]), self.obs.candidates)
    with self.assertRaisesRegex(session.SessionError, "NAME one of N"):
      session.parse_target("D=1e10", self.table)
    with self.assertRaisesRegex(session.SessionError, "lacks N"):
      session.parse_target("", self.table)

  def test_grid_csv(self):
    grid = self.dir / "grid.csv"
    grid.write_text("lr,bs\n0.001,64\n0.002,128\n")
    np.testing.assert_allclose(session.read_grid(grid, self.table), [[0.001, 64], [0.002, 128]])
    grid.write_text("lr\n0.001\n")
    with self.assertRaisesRegex(session.SessionError, "lacks the column"):
      session.read_grid(grid, self.table)


if __name__ == "__main__":
  absltest.main()
