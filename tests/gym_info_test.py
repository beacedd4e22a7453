"""Tests for `launch/gym_info.py`, run as a user runs it."""

import json
import pathlib
import subprocess
import sys

from absl.testing import absltest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "launch" / "gym_info.py"


def run(*args):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                        timeout=300)


class GymInfoTest(absltest.TestCase):

  def test_json_of_the_builtin_tasks(self):
    result = run("--json")
    self.assertEqual(result.returncode, 0, result.stderr)
    info = json.loads(result.stdout)["tasks"]
    self.assertEqual(info["pretrain_steplaw"]["rows"], 1911)
    self.assertLen(info["pretrain_steplaw"]["fidelities"], 17)
    self.assertEqual(info["pretrain_steplaw"]["direction"], "min")
    self.assertEqual(info["arch_hwgpt"]["fidelities"], ["s", "m", "l"])
    self.assertEqual(info["arch_hwgpt"]["configs_per_fidelity"], {"s": 162, "m": 162, "l": 162})
    self.assertEqual(info["mixture_admire"]["rows"], 460)
    self.assertEqual(list(info["mixture_admire"]["configs_per_fidelity"].values()),
                     [256, 128, 76])
    self.assertEqual(info["mixture_admire"]["metric"], "metric_avg_id+ood")
    rho = [c["spearman"] for c in info["mixture_admire"]["neighbour_rank_correlation"]]
    self.assertTrue(all(0.5 < r < 0.7 for r in rho), rho)
    grpo = info["grpo_own"]
    self.assertGreaterEqual(len(grpo["fidelities"]), 3)
    self.assertTrue(all(n >= 50 for n in grpo["configs_per_fidelity"].values()))
    self.assertEqual((grpo["metric"], grpo["direction"]), ("heldout_accuracy", "max"))
    shifts = grpo["neighbour_rank_correlation"]
    self.assertLen(shifts, len(grpo["fidelities"]) - 1)
    for c in shifts:
      self.assertEqual((c["shared"], c["matched_by"]), (52, "value"))
      self.assertBetween(c["spearman"], -1.0, 1.0)

  def test_text_for_a_user_csv(self):
    csv = pathlib.Path(self.create_tempdir().full_path) / "mine.csv"
    csv.write_text("lr,N,val_loss\n1e-3,1e8,3.0\n3e-3,1e8,2.8\n1e-3,1e9,2.5\n3e-3,1e9,2.6\n")
    result = run(f"--csv={csv}", "--params=lr:log", "--fidelities=N", "--metric=val_loss:min")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("== mine: 4 rows, 2 fidelities, metric val_loss (min)", result.stdout)
    self.assertIn("N=1.000e+09: 2 configs; best val_loss=2.5 at lr=0.001", result.stdout)

  def test_bad_csv_is_one_clear_error(self):
    csv = pathlib.Path(self.create_tempdir().full_path) / "bad.csv"
    csv.write_text("lr,N,val_loss\n1e-3,1e8,3.0\n")
    result = run(f"--csv={csv}", "--params=lr:log,bs:log", "--fidelities=N",
                 "--metric=val_loss:min")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(f"error: {csv}: no column 'bs'", result.stderr)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
