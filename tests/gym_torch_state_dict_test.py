"""Tests for the torch-free .pt reader against the same weights shipped as .npz."""

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from autollm_jax.gym import data
from autollm_jax.gym import torch_state_dict


class TorchStateDictTest(parameterized.TestCase):

  @parameterized.parameters("s", "m", "l")
  def test_matches_npz_copy(self, size):
    pt = torch_state_dict.load_state_dict(data.source_path(f"hwgptbench/perplexity_{size}.pt"))
    root, _ = data.resolve_data_dir()
    npz = np.load(root / "hwgptbench" / f"perplexity_{size}.npz")
    self.assertLen(pt, 10)
    for name, array in pt.items():
      self.assertEqual(array.dtype, np.float32)
      np.testing.assert_array_equal(array, npz[name.replace(".", "_")])


if __name__ == "__main__":
  absltest.main()
