"""Tests for the built-in tasks' tables (the counts the sources are known to have)."""

import json
import pathlib
import shutil
from unittest import mock

import numpy as np
from absl.testing import absltest

from autollm_jax.gym import data
from autollm_jax.gym import tasks


class TasksTest(absltest.TestCase):

  def test_pretrain_steplaw(self):
    t = tasks.load_task("pretrain_steplaw")
    self.assertEqual(t.source_rows, 1911)
    self.assertLen(t.fidelity_names, 17)
    self.assertEqual(t.param_names, ("lr", "bs"))
    self.assertEqual(t.fidelity_scale_names, ("N", "D"))
    self.assertEqual(t.metric().name, "smooth loss")
    self.assertEqual(t.metric().direction, "min")
    self.assertEqual(sorted({f"{n:.4g}" for n in t.fidelity_scale[:, 0]}),
                     ["1.074e+09", "2.147e+08", "2.683e+08", "4.293e+08", "5.369e+08"])
    self.assertEqual(t.configs_per_fidelity()["N=1.074e+09,D=5.690e+10"], 47)

  def test_arch_hwgpt(self):
    t = tasks.load_task("arch_hwgpt")
    self.assertEqual(t.fidelity_names, ("s", "m", "l"))
    self.assertEqual(set(t.configs_per_fidelity().values()), {162})
    self.assertEqual(t.aux_names, ("n_params",))

  def test_mixture_admire(self):
    t = tasks.load_task("mixture_admire")
    self.assertEqual(t.source_rows, 460)
    self.assertEqual(list(t.configs_per_fidelity().values()), [256, 128, 76])
    self.assertLen(t.params, 19)
    self.assertEqual(t.metric_names[:3], ("metric_avg_id+ood", "metric_avg_id", "metric_avg_ood"))
    self.assertGreater(len(t.metric_names), 17)
    self.assertTrue(all(m.direction == "max" for m in t.metrics))
    np.testing.assert_allclose(t.configs.sum(axis=1), 1.0, atol=2e-3)

  def test_grpo_own(self):
    t = tasks.load_task("grpo_own")
    provenance = json.loads((data.GYM_DIR / "grpo_own" / "provenance.json").read_text())
    seeds = len(provenance["settings"]["seeds"])
    self.assertGreaterEqual(seeds, 3)
    self.assertGreaterEqual(len(t.fidelity_names), 3)
    counts = list(t.configs_per_fidelity().values())
    self.assertEqual(set(counts), {provenance["settings"]["num_configs"]})
    self.assertGreaterEqual(counts[0], 50)
    self.assertEqual(t.source_rows, sum(counts) * seeds)
    self.assertEqual(t.param_names,
                     ("learning_rate", "kl_coef", "temperature", "clip_eps", "group_size"))
    self.assertEqual(t.fidelity_scale_names, ("policy_params",))
    scale = t.fidelity_scale[:, 0]
    self.assertEqual(list(scale), sorted(scale))
    self.assertGreaterEqual(scale[-1] / scale[0], 10.0)
    self.assertEqual(t.metric_names, ("heldout_accuracy", "heldout_pass1"))
    self.assertTrue(all(m.direction == "max" for m in t.metrics))
    self.assertTrue(((t.outcomes >= 0) & (t.outcomes <= 1)).all())
    self.assertEqual(t.aux_names, ("sft_accuracy", "final_reward"))

  def test_grpo_own_without_its_csv_says_how_to_regenerate(self):
    gym_dir = pathlib.Path(self.create_tempdir().full_path)
    shutil.copytree(data.GYM_DIR / "tasks", gym_dir / "tasks")
    with mock.patch.object(data, "GYM_DIR", gym_dir):
      with self.assertRaisesRegex(data.GymDataError,
                                  "missing .*outcomes.csv.* python launch/grpo_sweep.py"):
        tasks.load_task("grpo_own")

  def test_unknown_task(self):
    with self.assertRaisesRegex(KeyError, "unknown task 'nope'; tasks: pretrain_steplaw"):
      tasks.load_task("nope")


if __name__ == "__main__":
  absltest.main()
