"""Tests for the pipeline's up-front config check: a bad field stops the run before any stage
trains, with a message that names the field and the fix."""

import pathlib

from absl.testing import absltest

from autollm_jax import config_files
from autollm_jax import pipeline

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


if __name__ == "__main__":
  absltest.main()
