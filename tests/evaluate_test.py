"""Tests for `launch/evaluate.py` with a trained policy, run as a user runs it."""

import json
import pathlib
import subprocess
import sys

from absl.testing import absltest
from flax import nnx

from autollm_jax import checkpoint
from autollm_jax import experiments
from autollm_jax import protocol
from autollm_jax import sp_tokenizer
from autollm_jax.agents import policy
from autollm_jax.gym import tasks
from autollm_jax.model import config as model_config
from autollm_jax.model import transformer

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "launch" / "evaluate.py"


class EvaluatePolicyTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    """An untrained steplaw policy's checkpoint directory, as launch/train.py writes one:
    its turns (8 reasoning tokens, then the action) fit steplaw's two-value actions, not
    arch_hwgpt's five."""
    super().setUpClass()
    table = tasks.load_task("pretrain_steplaw")
    test = [e for e in experiments.curate([table], seed=0) if e.split == "test"]
    text = [protocol.render_prompt(table, e, 3) for e in test]
    text.append(protocol.render_turn("so", table.param_names, [1e-3, 64.0]) +
                protocol.render_feedback("smooth loss", 3.0, 3.0, 1))
    tok = sp_tokenizer.train_sentencepiece(text * 6, vocab_size=400)
    config = model_config.get_config(
        "scratch_1m", vocab_size=tok.vocab_size, embed_dim=32, num_layers=2, num_heads=2,
        num_kv_heads=1, head_dim=16, mlp_dim=64)
    _, params = nnx.split(transformer.create_model(config, 0))
    cls.dir = pathlib.Path(absltest.get_default_test_tmpdir()) / "evaluate_test"
    cls.checkpoint = cls.dir / "checkpoints"
    manager = checkpoint.CheckpointManager(cls.checkpoint)
    manager.save(1, params, None, config, tok.to_blob())
    manager.close()
    policy.PolicySettings(max_prompt_rows=3, max_context_fidelities=1, turn_tokens=48,
                          think_tokens=8, tasks=("pretrain_steplaw",)).save(cls.checkpoint)

  def _run(self, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--agents=policy", f"--checkpoint={self.checkpoint}",
         "--seeds=1", "--budget=1", f"--out={self.dir / out}", *extra],
        capture_output=True, text=True, timeout=600)

  def test_a_policy_is_played_on_the_tasks_it_was_trained_on(self):
    result = self._run("default")
    self.assertEqual(result.returncode, 0, result.stderr)
    report = json.loads((self.dir / "default" / "report.json").read_text())
    self.assertNotEmpty(report["experiments"])
    self.assertTrue(all(e.startswith("pretrain_steplaw/") for e in report["experiments"]),
                    report["experiments"])

  def test_a_task_whose_actions_do_not_fit_its_turns_is_one_clear_error(self):
    result = self._run("hwgpt", "--tasks=pretrain_steplaw,arch_hwgpt")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("error: turn_tokens=48 leaves no room for the action", result.stderr)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
