"""Tests for the tensorstore cache of task tables: reuse, rebuild on change, no partial entries."""

import os
import pathlib
from unittest import mock

import numpy as np
from absl.testing import absltest

from autollm_jax.gym import cache
from autollm_jax.gym import csv_task
from autollm_jax.gym import data
from autollm_jax.gym import tasks

CSV = "lr,N,loss\n1e-3,1,3.0\n2e-3,1,2.5\n1e-3,2,2.0\n2e-3,2,2.2\n"


class CacheTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = self.create_tempdir().full_path
    self.enter_context(mock.patch.dict(os.environ, {data.ENV_CACHE_DIR: self.cache_dir}))
    self.csv = pathlib.Path(self.create_tempdir().full_path) / "sweep.csv"
    self.csv.write_text(CSV)
    self.spec = csv_task.spec_from_flags(str(self.csv), "lr:log", "N", "loss:min")

  def entries(self):
    return sorted(p.name for p in (pathlib.Path(self.cache_dir) / "tables").iterdir())

  def test_round_trip_keeps_every_field(self):
    table = tasks.load_task("mixture_admire")
    entry = pathlib.Path(self.cache_dir) / "t"
    cache.save(table, entry)
    loaded = cache.load(entry)
    for field in ("name", "params", "metrics", "fidelity_names", "fidelity_scale_names",
                  "aux_names", "source_rows", "description"):
      self.assertEqual(getattr(loaded, field), getattr(table, field), field)
    for field in ("configs", "fidelity_index", "outcomes", "fidelity_scale", "aux"):
      np.testing.assert_array_equal(getattr(loaded, field), getattr(table, field))

  def test_second_load_reads_the_cache(self):
    first = tasks.load_csv_task(self.spec)
    self.assertLen(self.entries(), 1)
    with mock.patch.object(csv_task, "build_table", side_effect=AssertionError("rebuilt")):
      second = tasks.load_csv_task(self.spec)
    np.testing.assert_array_equal(first.outcomes, second.outcomes)

  def test_changed_source_is_rebuilt(self):
    tasks.load_csv_task(self.spec)
    self.csv.write_text(CSV.replace("2.5", "1.5"))
    table = tasks.load_csv_task(self.spec)
    self.assertLen(self.entries(), 2)
    np.testing.assert_allclose(table.outcomes_at(0), [3.0, 1.5])

  def test_failed_build_caches_nothing(self):
    self.csv.write_text(CSV + "3e-3,2,nan\n")
    with self.assertRaises(csv_task.CsvTaskError):
      tasks.load_csv_task(self.spec)
    self.assertFalse((pathlib.Path(self.cache_dir) / "tables").exists() and self.entries())


if __name__ == "__main__":
  absltest.main()
