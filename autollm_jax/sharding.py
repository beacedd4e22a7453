"""Device mesh, partition rules by parameter name, and multi-host start.

The mesh has two axes: "fsdp" (data parallel over the batch, parameters sharded fully) and
"tensor" (heads and MLP width split across devices). A rule maps a parameter name (dotted,
e.g. "blocks.q_proj") to one mesh axis per array dimension; a dimension that the axis does not
divide stays replicated, so one rule set fits every model shape.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from autollm_jax.model.config import ModelConfig
from autollm_jax.model.kv_cache import KVCache
from autollm_jax.model.transformer import abstract_model, create_model

FSDP = "fsdp"
TENSOR = "tensor"

# (name regex, axes of the unstacked parameter); block parameters get a leading layer axis.
DEFAULT_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"(^|\.)embed$", (TENSOR, FSDP)),
    (r"(^|\.)lm_head$", (FSDP, TENSOR)),
    (r"\.(q|k|v)_proj$", (FSDP, TENSOR, None)),
    (r"\.o_proj$", (TENSOR, None, FSDP)),
    (r"\.(gate|up)_proj$", (FSDP, TENSOR)),
    (r"\.down_proj$", (TENSOR, FSDP)),
    (r"\.scale$", (None,)),
)


def make_mesh(fsdp: int = -1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("fsdp", "tensor") mesh over `devices` (default all), with Auto axis types.

  Args:
    fsdp: size of the fsdp axis; -1 takes the devices left after `tensor`.
    tensor: size of the tensor axis.
    devices: devices to use.
  """
  devices = list(devices if devices is not None else jax.devices())
  if fsdp == -1:
    fsdp = len(devices) // tensor
  if fsdp * tensor != len(devices):
    raise ValueError(f"mesh fsdp={fsdp} x tensor={tensor} does not use the {len(devices)} "
                     "devices; set --mesh sizes whose product is the device count")
  kwargs = {}
  if hasattr(jax.sharding, "AxisType"):
    # Explicit axes (the default in newer jax) reject the implicit resharding we rely on.
    kwargs["axis_types"] = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh((fsdp, tensor), (FSDP, TENSOR), devices=devices, **kwargs)


def _name(path) -> str:
  parts = []
  for key in path:
    part = getattr(key, "key", getattr(key, "name", getattr(key, "idx", None)))
    if part != "value":
      parts.append(str(part))
  return ".".join(parts)


def partition_spec(name: str, shape: Sequence[int], mesh: Mesh,
                   rules=DEFAULT_RULES) -> P:
  """The PartitionSpec of parameter `name` with `shape` (first matching rule; axes that do not
  divide their dimension are dropped; unmatched names are replicated)."""
  for pattern, axes in rules:
    if re.search(pattern, name):
      if name.startswith("blocks."):
        axes = (None,) + tuple(axes)
      if len(axes) != len(shape):
        raise ValueError(f"partition rule {pattern!r} has {len(axes)} axes but parameter "
                         f"{name} has shape {tuple(shape)}")
      return P(*(a if a is None or dim % mesh.shape[a] == 0 else None
                 for a, dim in zip(axes, shape)))
  return P()


def param_shardings(params: nnx.State, mesh: Mesh, rules=DEFAULT_RULES) -> nnx.State:
  """A pytree like `params` (arrays or ShapeDtypeStructs) of NamedShardings."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: NamedSharding(mesh, partition_spec(_name(path), x.shape, mesh, rules)),
      params)


def shard_params(params: nnx.State, mesh: Mesh, rules=DEFAULT_RULES) -> nnx.State:
  """`params` placed on `mesh` by the rules."""
  return jax.device_put(params, param_shardings(params, mesh, rules))


def init_sharded(config: ModelConfig, mesh: Mesh, seed: int = 0, rules=DEFAULT_RULES
                 ) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, params) initialised directly in their shards (no full copy on one device)."""
  graphdef, abstract = abstract_model(config)
  shardings = param_shardings(abstract, mesh, rules)
  params = jax.jit(lambda: nnx.split(create_model(config, seed))[1], out_shardings=shardings)()
  return graphdef, params


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Batch-major arrays of rank `ndim`, split over "fsdp" on their first axis."""
  return NamedSharding(mesh, P(FSDP, *([None] * (ndim - 1))))


def cache_sharding(mesh: Mesh, config: ModelConfig, batch_size: int) -> KVCache:
  """NamedShardings for a KVCache: batch over "fsdp", kv heads over "tensor" when divisible."""
  fsdp = FSDP if batch_size % mesh.shape[FSDP] == 0 else None
  heads = TENSOR if config.num_kv_heads % mesh.shape[TENSOR] == 0 else None
  kv = NamedSharding(mesh, P(None, fsdp, heads, None, None))
  rows = NamedSharding(mesh, P(fsdp, None))
  return KVCache(k=kv, v=kv, key_mask=rows, positions=rows, index=NamedSharding(mesh, P()))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Start multi-host JAX when launched on several hosts; a no-op on one host.

  Multi-host is detected from the arguments or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES
  / JAX_PROCESS_ID environment variables (on TPU pods and SLURM, JAX finds the rest itself).
  Returns whether `jax.distributed.initialize` was called.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if coordinator_address is None and (num_processes is None or num_processes <= 1):
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True
