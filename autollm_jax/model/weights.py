"""Turning named host arrays into the decoder's parameter state (shared by the importers)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autollm_jax.model.config import ModelConfig
from autollm_jax.model.transformer import abstract_model
from autollm_jax.tokenizer import Tokenizer


@dataclasses.dataclass
class Pretrained:
  """An imported model: config, params state, graphdef-compatible with `create_model`, and
  its tokenizer."""
  config: ModelConfig
  params: nnx.State
  tokenizer: Tokenizer


def _flatten_names(tree, prefix: str = "") -> dict[str, object]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten_names(value, name + "."))
    else:
      out[name] = value
  return out


def param_names(config: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
  """Dotted parameter names ("embed", "blocks.q_proj", "blocks.attn_norm.scale", ...) and
  their abstract shapes; block parameters carry a leading layer axis."""
  _, abstract = abstract_model(config)
  return _flatten_names(nnx.to_pure_dict(abstract))


def assemble_params(config: ModelConfig, named: dict[str, np.ndarray], source: str
                    ) -> nnx.State:
  """The params state of `config` filled from `named` (dotted name -> host array).

  Args:
    config: the target model config.
    named: every name of `param_names(config)` with an array of exactly that shape.
    source: the file the arrays came from (for error messages).
  Returns:
    nnx.State of device arrays in `config.param_dtype`.
  Raises:
    ValueError: a parameter is missing, unexpected, or has the wrong shape.
  """
  expected = param_names(config)
  missing = sorted(set(expected) - set(named))
  extra = sorted(set(named) - set(expected))
  if missing or extra:
    raise ValueError(f"{source}: weights do not fit model {config.name!r}: missing {missing}, "
                     f"unexpected {extra}")
  for name, spec in expected.items():
    if tuple(named[name].shape) != tuple(spec.shape):
      raise ValueError(f"{source}: parameter {name} has shape {tuple(named[name].shape)}, model "
                       f"{config.name!r} expects {tuple(spec.shape)}; pick the matching --model")
  _, abstract = abstract_model(config)
  pure = nnx.to_pure_dict(abstract)

  def fill(tree, prefix=""):
    for key, value in tree.items():
      name = f"{prefix}{key}"
      if isinstance(value, dict):
        fill(value, name + ".")
      else:
        tree[key] = jnp.asarray(named[name], dtype=config.param_dtype)

  fill(pure)
  nnx.replace_by_pure_dict(abstract, pure)
  return abstract


def stack_layers(per_layer: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """{"blocks.<name>": [L, ...]} from a list of per-layer {"<name>": array} dicts."""
  names = per_layer[0].keys()
  return {f"blocks.{n}": np.stack([layer[n] for layer in per_layer]) for n in names}
