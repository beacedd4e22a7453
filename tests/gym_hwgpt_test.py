"""Tests for the HW-GPT-Bench perplexity surrogate and the arch_hwgpt table."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from autollm_jax.gym import data
from autollm_jax.gym import hwgpt


def numpy_mlp(size, x):
  """An independent forward pass of the surrogate from the .npz copy of the weights."""
  root, _ = data.resolve_data_dir()
  w = np.load(root / "hwgptbench" / f"perplexity_{size}.npz")
  h = x
  for i in range(1, 5):
    h = np.maximum(h @ w[f"fc{i}_weight"].T + w[f"fc{i}_bias"], 0)
  return (h @ w["fc5_weight"].T + w["fc5_bias"])[:, 0]


def random_architectures(size, n, seed):
  rng = np.random.default_rng(seed)
  s, lmax = hwgpt.space(size), hwgpt.max_layers(size)
  return [(size, int(rng.choice(s["embed_dim"])), int(rng.choice(s["n_layer"])),
           [int(v) for v in rng.choice(s["mlp_ratio"], lmax)],
           [int(v) for v in rng.choice(s["n_head"], lmax)], bool(rng.integers(2)))
          for _ in range(n)]


class HwgptTest(absltest.TestCase):

  def test_known_values_of_the_s_supernet(self):
    layers = hwgpt.load_surrogate("s")
    largest = hwgpt.encode("s", 768, 12, [4] * 12, [12] * 12, True)
    smallest = hwgpt.encode("s", 192, 10, [2] * 12, [4] * 12, False)
    ppl = np.asarray(hwgpt.surrogate_perplexity(layers, jnp.stack([largest, smallest])))
    self.assertAlmostEqual(ppl[0], 21.3, delta=0.05)
    self.assertAlmostEqual(ppl[1], 43.0, delta=0.05)

  def test_mean_over_random_per_layer_architectures(self):
    for size, mean in (("s", 32.4), ("m", 28.3), ("l", 23.6)):
      x = np.stack([hwgpt.encode(*a) for a in random_architectures(size, 3000, seed=1)])
      got = np.asarray(hwgpt.surrogate_perplexity(hwgpt.load_surrogate(size), jnp.asarray(x)))
      self.assertAlmostEqual(float(got.mean()), mean, delta=0.3)
      np.testing.assert_allclose(got, numpy_mlp(size, x), rtol=1e-4)

  def test_encoding_layout(self):
    x = hwgpt.encode("s", 384, 10, [2, 3, 4] * 4, [4, 8, 12] * 4, False)
    self.assertEqual(x.shape, (80,))
    self.assertEqual(x[:6].tolist(), [0, 1, 0, 1, 0, 0])
    mlp = x[6:42].reshape(12, 3)
    self.assertEqual(mlp[:3].argmax(axis=1).tolist(), [0, 1, 2])
    self.assertEqual(mlp[10:].sum(), 0)  # layers past n_layer stay zero
    self.assertEqual(x[78:].tolist(), [0, 1])
    with self.assertRaisesRegex(ValueError, "embed_dim=500 is not one of"):
      hwgpt.encode("s", 500, 10, [2] * 12, [4] * 12, True)

  def test_parameter_count_of_gpt2_small_shape(self):
    # GPT-2 small (768 wide, 12 layers, 12 heads, MLP 4x, biases, tied embeddings) has
    # 124.4M parameters with its 1024 learned positions; rotary drops those 0.79M.
    count = hwgpt.parameter_count("s", 768, 12, [4] * 12, [12] * 12, True)
    self.assertAlmostEqual(count / 1e6, 124.44 - 0.79, delta=0.1)

  def test_table(self):
    table = hwgpt.build_table()
    self.assertEqual(table.configs_per_fidelity(), {"s": 162, "m": 162, "l": 162})
    self.assertEqual(table.param_names, hwgpt.PARAM_NAMES)
    self.assertTrue(np.all(np.diff(table.fidelity_scale[:, 0]) > 0))
    best_s = table.configs_at("s")[np.argmin(table.outcomes_at("s"))]
    self.assertEqual(best_s.tolist(), [768, 12, 4, 12, 1])
    self.assertSetEqual(set(table.configs_at("l")[:, 0]), {320, 640, 1280})


if __name__ == "__main__":
  absltest.main()
