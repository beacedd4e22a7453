"""arch_hwgpt: GPT architectures scored by HW-GPT-Bench's perplexity surrogate, in JAX.

The surrogate is an MLP (80/152/224 inputs for the s/m/l supernets, four hidden ReLU layers of
128, one output: OpenWebText perplexity) whose weights are the benchmark's upstream .pt files.
Its input encodes an architecture of the full per-layer space:
  concat[one_hot(embed_dim, 3), one_hot(n_layer, 3), mlp one-hot [Lmax, 3] row-major,
         head one-hot [Lmax, 3] row-major, one_hot(bias) in the order (True, False)]
with rows of layers >= n_layer all zero and choices in ascending order. The task's table is
the homogeneous sub-space (one mlp_ratio and one n_head for all layers): 162 architectures per
supernet, each with its parameter count as the aux column "n_params".
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autollm_jax.gym import data
from autollm_jax.gym import table as table_lib
from autollm_jax.gym import torch_state_dict

PARAM_NAMES = ("embed_dim", "n_layer", "mlp_ratio", "n_head", "bias")


@functools.lru_cache(maxsize=None)
def task_definition() -> dict:
  with open(data.GYM_DIR / "tasks" / "arch_hwgpt.json") as f:
    return json.load(f)


def space(size: str) -> dict[str, list[int]]:
  """The choices of one supernet ("s", "m" or "l"): parameter name -> values."""
  sizes = task_definition()["sizes"]
  if size not in sizes:
    raise KeyError(f"arch_hwgpt has no supernet {size!r}; sizes: {list(sizes)}")
  return sizes[size]


def max_layers(size: str) -> int:
  return max(space(size)["n_layer"])


def encode(size: str, embed_dim: int, n_layer: int, mlp_ratios: Sequence[int],
           n_heads: Sequence[int], bias: bool) -> np.ndarray:
  """float32[8 + 6 * Lmax] surrogate input of one architecture of the full per-layer space.

  Args:
    size: the supernet.
    embed_dim, n_layer, bias: as in the supernet's choices.
    mlp_ratios, n_heads: per-layer choices, at least n_layer of each (extra ones ignored).
  """
  s = space(size)
  lmax = max_layers(size)

  def index(name, choices, value):
    if value not in choices:
      raise ValueError(f"arch_hwgpt/{size}: {name}={value} is not one of {choices}")
    return choices.index(value)

  if len(mlp_ratios) < n_layer or len(n_heads) < n_layer:
    raise ValueError(f"arch_hwgpt/{size}: need {n_layer} per-layer mlp_ratios and n_heads, got "
                     f"{len(mlp_ratios)} and {len(n_heads)}")
  x = np.zeros(8 + 6 * lmax, np.float32)
  x[index("embed_dim", s["embed_dim"], embed_dim)] = 1
  x[3 + index("n_layer", s["n_layer"], n_layer)] = 1
  for layer in range(n_layer):
    x[6 + 3 * layer + index("mlp_ratio", s["mlp_ratio"], mlp_ratios[layer])] = 1
    x[6 + 3 * lmax + 3 * layer + index("n_head", s["n_head"], n_heads[layer])] = 1
  x[6 + 6 * lmax + (0 if bias else 1)] = 1
  return x


def load_surrogate(size: str, data_dir=None) -> list[tuple[jax.Array, jax.Array]]:
  """[(W [out, in], b [out])] x 5, the MLP layers, from the pinned upstream .pt file."""
  relpath = task_definition()["surrogate"].format(size=size)
  state = torch_state_dict.load_state_dict(data.source_path(relpath, data_dir))
  return [(jnp.asarray(state[f"fc{i}.weight"]), jnp.asarray(state[f"fc{i}.bias"]))
          for i in range(1, 6)]


@jax.jit
def surrogate_perplexity(layers, x: jax.Array) -> jax.Array:
  """float32[B] predicted perplexity of encoded architectures x [B, d] (torch Linear layout)."""
  h = x
  for w, b in layers[:-1]:
    h = jax.nn.relu(h @ w.T + b)
  w, b = layers[-1]
  return (h @ w.T + b)[:, 0]


def parameter_count(size: str, embed_dim: int, n_layer: int, mlp_ratios: Sequence[int],
                    n_heads: Sequence[int], bias: bool) -> int:
  """Parameters of a supernet sub-network (litgpt GPT: tied embeddings, rotary, no pos. emb).

  Per layer: two LayerNorms, attention qkv [E, 3*H*64] and projection [H*64, E], a GELU MLP
  [E, r*E] and [r*E, E]; biases on every linear and norm when `bias`. Plus the token embedding
  (tied with the output head) and the final LayerNorm.
  """
  fixed = task_definition()["fixed"]
  e, hd = embed_dim, fixed["head_size"]
  b = 1 if bias else 0
  total = fixed["vocab_size"] * e + e * (1 + b)
  for layer in range(n_layer):
    q = n_heads[layer] * hd
    hidden = mlp_ratios[layer] * e
    total += 2 * e * (1 + b)
    total += e * 3 * q + b * 3 * q + q * e + b * e
    total += e * hidden + b * hidden + hidden * e + b * e
  return total


def homogeneous_architectures(size: str) -> np.ndarray:
  """float64[162, 5] the homogeneous sub-space: (embed_dim, n_layer, mlp_ratio, n_head, bias)."""
  s = space(size)
  return np.array(list(itertools.product(*(s[name] for name in PARAM_NAMES))), np.float64)


def _arch_args(size: str, row: np.ndarray) -> tuple:
  e, n, r, h, b = (int(v) for v in row)
  lmax = max_layers(size)
  return size, e, n, [r] * lmax, [h] * lmax, bool(b)


def build_table(data_dir=None) -> table_lib.TaskTable:
  """The arch_hwgpt TaskTable: 162 homogeneous architectures x supernets s, m, l."""
  definition = task_definition()
  sizes = list(definition["sizes"])
  configs, fidelity_index, outcomes, n_params, scale = [], [], [], [], []
  for f, size in enumerate(sizes):
    archs = homogeneous_architectures(size)
    x = np.stack([encode(*_arch_args(size, row)) for row in archs])
    ppl = np.asarray(surrogate_perplexity(load_surrogate(size, data_dir), jnp.asarray(x)))
    counts = [parameter_count(*_arch_args(size, row)) for row in archs]
    configs.append(archs)
    fidelity_index.append(np.full(len(archs), f, np.int32))
    outcomes.append(ppl.astype(np.float64)[:, None])
    n_params.append(np.asarray(counts, np.float64)[:, None])
    scale.append([float(max(counts))])
  choices = {name: tuple(sorted({v for size in sizes for v in definition["sizes"][size][name]}))
             for name in PARAM_NAMES}
  params = (table_lib.Param("embed_dim", "log"), table_lib.Param("n_layer", "linear"),
            table_lib.Param("mlp_ratio", "linear"), table_lib.Param("n_head", "linear"),
            table_lib.Param("bias", "categorical", choices["bias"]))
  return table_lib.TaskTable(
      name=definition["name"], description=definition["description"], params=params,
      metrics=(table_lib.Metric("perplexity", "min"),), fidelity_names=tuple(sizes),
      fidelity_scale_names=("N",), fidelity_scale=np.asarray(scale, np.float64),
      configs=np.concatenate(configs), fidelity_index=np.concatenate(fidelity_index),
      outcomes=np.concatenate(outcomes), aux_names=("n_params",), aux=np.concatenate(n_params),
      source_rows=sum(len(c) for c in configs))
