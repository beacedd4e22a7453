"""Tests for the pipeline: its up-front config check (a bad field stops the run before any stage
trains, with a message that names the field and the fix), and every stage on a tiny config."""

import pathlib

from absl.testing import absltest

from autollm_jax import config_files
from autollm_jax import pipeline
from autollm_jax.training import metrics

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def mtrl_config():
  return config_files.load_module(CONFIGS / "mtrl.py").get_config()


class CheckConfigTest(absltest.TestCase):

  def test_every_shipped_config_passes(self):
    configs = [(path.name, config_files.load_module(path).get_config())
               for path in sorted(CONFIGS.glob("*.py"))]
    smollm2 = config_files.load_module(CONFIGS / "sft_smollm2_135m.py")
    configs.append(("sft_smollm2_135m.py:cpu", smollm2.get_config("cpu")))
    for name, config in configs:
      with self.subTest(name):
        self.assertEqual(pipeline.check_config(config), pipeline.parse_stages(config.stages))
    with self.assertRaisesRegex(ValueError, "the only variant is 'cpu'"):
      smollm2.get_config("gpu")

  def test_comma_joined_agents_get_the_tuple_syntax(self):
    config = mtrl_config()
    config.eval.agents = ("random,teacher",)  # what --config.eval.agents=random,teacher gives
    with self.assertRaisesRegex(ValueError, r"config\.eval\.agents: 'random,teacher'.*"
                                r"""--config\.eval\.agents="\('random', 'teacher',\)\""""):
      pipeline.check_config(config)

  def test_unknown_and_checkpoint_agents_are_refused(self):
    for name in ("tecaher", "policy"):
      with self.subTest(name):
        config = mtrl_config()
        config.eval.agents = ("random", name)
        with self.assertRaisesRegex(ValueError, f"'{name}' is not an agent here; use some of "
                                    r"random, topk, teacher.*sft, sft_rl, rl_only"):
          pipeline.check_config(config)

  def test_what_the_teacher_sees_is_checked(self):
    config = mtrl_config()
    config.simulation.teacher_sees = "prompts"
    with self.assertRaisesRegex(ValueError, r"config\.simulation\.teacher_sees: 'prompts'; "
                                r"write 'prompt' .* or 'all'"):
      pipeline.check_config(config)

  def test_budgets_are_checked(self):
    config = mtrl_config()
    config.rl.budgets = (5, 10)
    with self.assertRaisesRegex(ValueError, r"config\.rl\.budgets: .*\[10\] outside 1\.\.5; "
                                r"write a tuple such as \(5,\)"):
      pipeline.check_config(config)
    config.stages = "simulate,sft"  # no RL stage reads rl.budgets
    self.assertEqual(pipeline.check_config(config), ("simulate", "sft"))
    config.simulation.budgets = (0,)
    with self.assertRaisesRegex(ValueError, r"config\.simulation\.budgets: .*\[0\]"):
      pipeline.check_config(config)

  def test_micro_batches_must_split_over_the_fsdp_devices(self):
    config = mtrl_config()  # sft micro-batches of 4 sequences, rl of 2 x 8 / 2 = 8
    pipeline.check_batches_fit_mesh(config, pipeline.parse_stages(config.stages), 4)
    with self.assertRaisesRegex(ValueError, r"config\.sft\.batch_size / sft\.grad_accum_steps "
                                r"= 4 / 1 .* mesh's 8 fsdp devices: make it a whole multiple of 8"):
      pipeline.check_batches_fit_mesh(config, ("sft",), 8)
    pipeline.check_batches_fit_mesh(config, ("rl",), 8)
    config.rl.group_size = 6
    with self.assertRaisesRegex(ValueError, r"config\.rl\.experiments_per_batch \* "
                                r"rl\.group_size .* = 12 / 2 .* multiple of 4"):
      pipeline.check_batches_fit_mesh(config, ("simulate", "rl_only"), 4)

  def test_agents_are_not_checked_without_the_evaluate_stage(self):
    config = mtrl_config()
    config.stages = "simulate,sft"
    config.eval.agents = ("tecaher",)
    self.assertEqual(pipeline.check_config(config), ("simulate", "sft"))

  def test_a_bad_config_stops_before_the_workdir_is_written(self):
    config = mtrl_config()
    config.eval.agents = ("tecaher",)
    workdir = pathlib.Path(self.create_tempdir().full_path) / "run"
    with self.assertRaisesRegex(ValueError, "config.eval.agents"):
      pipeline.train_and_evaluate(config, workdir)
    self.assertFalse(workdir.exists())


class TrainAndEvaluateTest(absltest.TestCase):

  def test_every_stage_runs_on_a_tiny_config(self):
    config = mtrl_config()
    config.data.tasks = ("pretrain_steplaw",)
    config.data.max_train_experiments = 6
    config.tokenizer.vocab_size = 512
    config.policy.think_tokens, config.policy.turn_tokens = 2, 32
    # Batches of 8 sequences: the tests' 8 fake devices split them.
    config.sft.total_steps, config.sft.batch_size, config.sft.warmup_steps = 3, 8, 1
    config.rl.iterations, config.rl.experiments_per_batch, config.rl.group_size = 2, 1, 8
    config.rl.minibatches, config.rl.warmup_steps = 1, 1
    config.rl.budgets = (2,)
    config.eval.agents, config.eval.seeds, config.eval.budget = ("random",), 1, 1
    config.sft.imitation_train_episodes = 2
    workdir = pathlib.Path(self.create_tempdir().full_path)
    report = pipeline.train_and_evaluate(config, workdir)

    self.assertCountEqual(report["agents"], ("random", "sft", "sft_rl", "rl_only"))
    for summary in report["agents"].values():
      self.assertLen(summary["overall"]["strict_regret"]["mean"], 1)
      self.assertEqual(summary["overall"]["strict_regret"]["experiments"], 3)
    for stage in ("rl", "rl_only"):
      records = metrics.read_metrics(workdir / stage)
      self.assertEqual([(r["stage"], r["step"]) for r in records], [(stage, 1), (stage, 2)])
      self.assertEqual({r["trials"] for r in records}, {2.0})  # rl.budgets, not the curated ones
    imitation, = metrics.read_metrics(workdir / "sft", "sft_imitation")
    self.assertEqual(imitation["step"], 3)
    # Two of the training episodes (the cap), each test experiment's one episode.
    self.assertEqual((imitation["train_episodes"], imitation["test_episodes"]), (2, 3))
    for split in ("train", "test"):
      for rate in ("token_match", "turn_match", "first_turn_match"):
        self.assertBetween(imitation[f"{split}_{rate}"], 0.0, 1.0)
    self.assertTrue((workdir / "eval" / "report.md").is_file())

    # Run again: every stage resumes finished, and the imitation is not scored twice.
    config.stages = "simulate,sft"
    pipeline.train_and_evaluate(config, workdir)
    self.assertEqual(metrics.read_metrics(workdir / "sft", "sft_imitation"), [imitation])


if __name__ == "__main__":
  absltest.main()
