"""Tests for tasks from CSV files: specs, averaging, and every bad-input message."""

import json
import pathlib

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from autollm_jax.gym import csv_task

HEADER = "lr,bs,N,D,smooth loss,note\n"
GOOD_ROWS = ("1e-3,64,1e8,1e9,3.0,a\n"
             "1e-3,64,1e8,1e9,3.2,b\n"      # same run twice: averaged
             "2e-3,64,1e8,1e9,2.9,c\n"
             "1e-3,128,1e9,1e10,2.5,d\n"
             "2e-3,128,1e9,1e10,2.4,e\n")


class CsvTaskTest(parameterized.TestCase):

  def write(self, text: str, name="runs.csv") -> pathlib.Path:
    path = pathlib.Path(self.create_tempdir().full_path) / name
    path.write_text(text)
    return path

  def build(self, text: str, params="lr:log,bs:log", fidelities="N,D",
            metric="smooth_loss:min"):
    path = self.write(text)
    spec = csv_task.spec_from_flags(str(path), params, fidelities, metric)
    return csv_task.build_table(spec, path), path

  def test_builds_and_averages_duplicates(self):
    table, _ = self.build(HEADER + GOOD_ROWS)
    self.assertEqual(table.name, "runs")
    self.assertEqual(table.source_rows, 5)
    self.assertEqual(table.fidelity_names, ("N=1.000e+08,D=1.000e+09", "N=1.000e+09,D=1.000e+10"))
    self.assertEqual(table.configs_per_fidelity(), {"N=1.000e+08,D=1.000e+09": 2,
                                                    "N=1.000e+09,D=1.000e+10": 2})
    np.testing.assert_allclose(table.outcomes_at(0), [3.1, 2.9])
    np.testing.assert_allclose(table.fidelity_scale, [[1e8, 1e9], [1e9, 1e10]])
    self.assertEqual(table.metrics[0].name, "smooth loss")  # smooth_loss matched it
    self.assertEqual([p.scale for p in table.params], ["log", "log"])

  def test_spec_file_with_globs_labels_and_aux(self):
    csv_path = self.write("model,w_a,w_b,score,time\nsmall,0.2,0.8,0.5,10\nsmall,0.6,0.4,0.6,12\n"
                          "big,0.2,0.8,0.7,100\n", name="mix.csv")
    spec_path = csv_path.parent / "mix.json"
    spec_path.write_text(json.dumps({
        "csv": "mix.csv", "params": {"w_*": "linear"}, "fidelities": ["model"],
        "fidelity_labels": {"model": {"N": {"small": 1e8, "big": 1e9}}},
        "metrics": {"score": "max"}, "aux": ["time"]}))
    table = csv_task.build_table(csv_task.load_spec(spec_path), csv_path)
    self.assertEqual(table.name, "mix")
    self.assertEqual(table.param_names, ("w_a", "w_b"))
    self.assertEqual(table.fidelity_names, ("small", "big"))
    self.assertEqual(table.fidelity_scale_names, ("N",))
    np.testing.assert_allclose(table.aux_at("big", "time"), [100])
    self.assertEqual(table.metric().direction, "max")

  @parameterized.named_parameters(
      ("empty_file", "", "is empty: it needs a header line"),
      ("header_only", HEADER, "is empty: it needs a header line"),
      ("missing_column", "lr,N,D,smooth loss\n1e-3,1e8,1e9,3\n1e-3,1e9,1e9,3\n",
       r"no column 'bs' \(named by the spec's params\). Columns are: lr, N, D, smooth loss"),
      ("non_numeric", HEADER + "1e-3,sixty,1e8,1e9,3.0,a\n",
       r"line 2, column 'bs': 'sixty' is not a number"),
      ("nan_outcome", HEADER + GOOD_ROWS + "3e-3,64,1e8,1e9,nan,x\n",
       r"line 7, column 'smooth loss': the outcome is nan, which is not finite"),
      ("inf_outcome", HEADER + GOOD_ROWS + "3e-3,64,1e8,1e9,inf,x\n",
       r"line 7, column 'smooth loss': the outcome is inf"),
      ("one_fidelity", HEADER + "1e-3,64,1e8,1e9,3.0,a\n2e-3,64,1e8,1e9,2.9,c\n",
       r"take only 1 distinct value\(s\); a multi-fidelity task needs at least two"),
      ("log_not_positive", HEADER + GOOD_ROWS + "0,64,1e8,1e9,3.0,x\n",
       r"line 7, column 'lr': 0.0 is not a valid value of a log-scaled parameter \(it must be "
       r"positive\)"),
      ("short_row", HEADER + "1e-3,64,1e8\n", r"line 2: 3 cells for 6 columns"),
  )
  def test_bad_csv(self, text, message):
    with self.assertRaisesRegex(csv_task.CsvTaskError, message) as ctx:
      self.build(text)
    self.assertIn("runs.csv", str(ctx.exception))

  def test_bad_flags(self):
    with self.assertRaisesRegex(csv_task.CsvTaskError, r"--params: 'lr:logarithmic' is not"):
      csv_task.spec_from_flags("x.csv", "lr:logarithmic", "N", "y:min")
    with self.assertRaisesRegex(csv_task.CsvTaskError, r"--metric: 'loss' is not NAME:min\|max"):
      csv_task.spec_from_flags("x.csv", "lr:log", "N", "loss")

  def test_bad_spec_files(self):
    folder = pathlib.Path(self.create_tempdir().full_path)
    (folder / "a.json").write_text("{not json")
    with self.assertRaisesRegex(csv_task.CsvTaskError, "a.json is not valid JSON"):
      csv_task.load_spec(folder / "a.json")
    (folder / "b.json").write_text(json.dumps({"csv": "x.csv", "params": {}}))
    with self.assertRaisesRegex(csv_task.CsvTaskError,
                                r"b.json lacks the field\(s\) \['fidelities', 'metrics'\]"):
      csv_task.load_spec(folder / "b.json")


if __name__ == "__main__":
  absltest.main()
