"""Tests for autollm_jax.gym.data: where source files are found, and their checksums."""

import os
import pathlib
import shutil
from unittest import mock

from absl.testing import absltest

from autollm_jax.gym import data

STEPLAW = "steplaw/dense_lr_bs_loss.csv"


class DataTest(absltest.TestCase):

  def test_every_pinned_file_is_found_and_matches_its_checksum(self):
    for relpath in data.sources():
      path = data.source_path(relpath)
      self.assertTrue(path.is_file())
      self.assertEqual(data.file_sha256(path), data.sources()[relpath]["sha256"])

  def test_resolution_order_flag_then_env_then_shared(self):
    with mock.patch.dict(os.environ, {data.ENV_DATA_DIR: "/from/env"}):
      self.assertEqual(data.resolve_data_dir("/from/flag"), (pathlib.Path("/from/flag"), "flag"))
      self.assertEqual(data.resolve_data_dir(), (pathlib.Path("/from/env"), "env"))
    with mock.patch.dict(os.environ, {data.ENV_DATA_DIR: ""}):
      root, how = data.resolve_data_dir()
      self.assertEqual(how, "shared")
      self.assertEqual(root, data.PROJECT_ROOT.parent / "shared" / "gym_data")

  def test_missing_file_names_file_folder_and_fix(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(data.GymDataError,
                                rf"missing gym source file {STEPLAW}: looked for {empty}.*"
                                r"--gym_data_dir.*raw\.githubusercontent\.com/step-law"):
      data.source_path(STEPLAW, empty)

  def test_corrupt_file_is_refused_with_its_expected_checksum(self):
    folder = pathlib.Path(self.create_tempdir().full_path)
    (folder / "steplaw").mkdir()
    shutil.copy(data.source_path(STEPLAW), folder / STEPLAW)
    with open(folder / STEPLAW, "a") as f:
      f.write("1,2,3\n")
    with self.assertRaisesRegex(data.GymDataError,
                                "is pinned to 9e46181076c04d45.*corrupt or another version"):
      data.source_path(STEPLAW, folder)

  def test_cache_fallback_downloads_and_checks(self):
    cache = self.create_tempdir().full_path
    fake_project = pathlib.Path(self.create_tempdir().full_path) / "project"
    served = data.source_path(STEPLAW).read_bytes()

    class Response:
      def __init__(self, payload):
        self._chunks = [payload, b""]
      def read(self, n):
        return self._chunks.pop(0)
      def __enter__(self):
        return self
      def __exit__(self, *a):
        return False

    with mock.patch.dict(os.environ, {data.ENV_DATA_DIR: "", data.ENV_CACHE_DIR: cache}), \
        mock.patch.object(data, "PROJECT_ROOT", fake_project), \
        mock.patch.object(data.urllib.request, "urlopen",
                          return_value=Response(served)) as urlopen:
      path = data.source_path(STEPLAW)
      self.assertEqual(urlopen.call_args[0][0], data.source_url(STEPLAW))
      self.assertEqual(path, pathlib.Path(cache) / "gym_data" / STEPLAW)
      self.assertEqual(path.read_bytes(), served)
      os.remove(path)
      urlopen.return_value = Response(served + b"tampered")
      with self.assertRaisesRegex(data.GymDataError, "downloaded .* has SHA-256"):
        data.source_path(STEPLAW)
      self.assertFalse(path.exists())


if __name__ == "__main__":
  absltest.main()
