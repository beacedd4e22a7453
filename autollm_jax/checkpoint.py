"""Orbax checkpoints that describe themselves: params, optimizer state, step, config, tokenizer.

Layout (one Orbax CheckpointManager, shared by SFT and GRPO training):
  <directory>/<step>/params/      parameters (nnx params as a pure dict)
  <directory>/<step>/opt_state/   optimizer state (optional)
  <directory>/<step>/meta/        JSON: format version, step, model config
  <directory>/<step>/tokenizer/   JSON: the tokenizer blob, base64 (optional)
An evaluation needs nothing but the directory: `restore_latest()` rebuilds the config, the
parameters (placed on any mesh) and the tokenizer blob
(`autollm_jax.tokenizer.tokenizer_from_blob` restores any of the project's tokenizers).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from autollm_jax import sharding as sharding_lib
from autollm_jax.model.config import ModelConfig
from autollm_jax.model.transformer import abstract_model

FORMAT_VERSION = 1
_ITEMS = ("params", "opt_state", "meta", "tokenizer")


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: missing, corrupt, or of another model."""


@dataclasses.dataclass
class Restored:
  """A restored checkpoint.

  Attributes:
    step: the training step saved.
    config: the model config saved with it.
    params: nnx.State of the model's parameters (on the requested mesh).
    opt_state: the optimizer state, or None when not requested or not saved.
    tokenizer_blob: the tokenizer bytes given to `save`, or None.
  """
  step: int
  config: ModelConfig
  params: nnx.State
  opt_state: Any
  tokenizer_blob: bytes | None


def _pure(params: nnx.State | dict) -> dict:
  return nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params


class CheckpointManager:
  """Save and restore training checkpoints in one directory.

  Example:
    manager = CheckpointManager("/tmp/run/ckpt")
    manager.save(step, params, opt_state, config, tokenizer.to_blob())
    restored = manager.restore_latest(mesh=mesh, opt_state_target=abstract_opt_state)
  """

  def __init__(self, directory: str | Path, max_to_keep: int | None = 3,
               save_interval_steps: int = 1):
    """Args:
      directory: where the step directories live (created if missing).
      max_to_keep: newest checkpoints kept (None keeps all).
      save_interval_steps: `save` writes only every this many steps unless forced.
    """
    self.directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           save_interval_steps=save_interval_steps)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  def save(self, step: int, params: nnx.State | dict, opt_state: Any, config: ModelConfig,
           tokenizer_blob: bytes | None = None, force: bool = False) -> bool:
    """Write a checkpoint for `step` (blocking until it is on disk).

    Args:
      step: the training step.
      params: nnx.State (or its pure dict) of the model's parameters.
      opt_state: optimizer state pytree, or None.
      config: the model config.
      tokenizer_blob: bytes that rebuild the tokenizer, or None.
      force: save even if the interval says not to.
    Returns:
      Whether a checkpoint was written.
    """
    items = {"params": ocp.args.StandardSave(_pure(params)),
             "meta": ocp.args.JsonSave({"format_version": FORMAT_VERSION, "step": int(step),
                                        "config": config.to_json()})}
    if opt_state is not None:
      items["opt_state"] = ocp.args.StandardSave(opt_state)
    if tokenizer_blob is not None:
      items["tokenizer"] = ocp.args.JsonSave(
          {"blob_b64": base64.b64encode(tokenizer_blob).decode()})
    saved = self._manager.save(int(step), args=ocp.args.Composite(**items), force=force)
    self._manager.wait_until_finished()
    return saved

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def _step_dir(self, step: int) -> Path:
    return self.directory / str(step)

  def read_meta(self, step: int | None = None) -> tuple[int, ModelConfig, bytes | None]:
    """(step, config, tokenizer blob) of `step` (default latest) without loading arrays."""
    step = self._resolve(step)
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      config = ModelConfig.from_json(meta["meta"]["config"])
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"{self._step_dir(step)}: checkpoint metadata is unreadable ({type(e).__name__}: {e});"
          " the checkpoint is corrupt or incomplete: delete that step directory or restore"
          " another step") from e
    blob = None
    if (self._step_dir(step) / "tokenizer").exists():
      tok = self._manager.restore(step, args=ocp.args.Composite(
          tokenizer=ocp.args.JsonRestore()))
      blob = base64.b64decode(tok["tokenizer"]["blob_b64"])
    return int(meta["meta"]["step"]), config, blob

  def _resolve(self, step: int | None) -> int:
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"{self.directory}: no checkpoint found; train first or pass the "
                              "directory that holds the step folders")
    elif step not in self.all_steps():
      raise CheckpointError(f"{self.directory}: no checkpoint for step {step}; "
                            f"available steps: {self.all_steps()}")
    return step

  def restore(self, step: int | None = None, *, expected_config: ModelConfig | None = None,
              mesh: Mesh | None = None, opt_state_target: Any = None) -> Restored:
    """Load checkpoint `step` (default latest).

    Args:
      step: the step to load.
      expected_config: if given, the checkpoint must hold a model of the same shape.
      mesh: place parameters on this mesh by `sharding.DEFAULT_RULES` (default: replicated
        on the first device); it need not be the mesh the checkpoint was saved from.
      opt_state_target: abstract optimizer state (e.g. `jax.eval_shape(opt.init, params)`,
        leaves may carry `.sharding`); None skips the optimizer state.
    Returns:
      Restored.
    Raises:
      CheckpointError: no such checkpoint, another model's, or unreadable.
    """
    step, config, blob = self.read_meta(step)
    if expected_config is not None and (
        expected_config.shape_signature() != config.shape_signature()):
      raise CheckpointError(
          f"{self._step_dir(step)} holds model {config.name!r} {config.shape_signature()}, not "
          f"{expected_config.name!r} {expected_config.shape_signature()} (vocab, width, layers, "
          "heads, kv heads, head dim, mlp, qk norm, post norms, tied); pass the matching "
          "--model or another checkpoint directory")
    _, abstract = abstract_model(config)
    if mesh is None:
      mesh = Mesh(jax.devices()[:1], (sharding_lib.FSDP,))
      shardings = jax.tree_util.tree_map(lambda _: NamedSharding(mesh, P()), abstract)
    else:
      shardings = sharding_lib.param_shardings(abstract, mesh)
    target = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
    items = {"params": ocp.args.StandardRestore(nnx.to_pure_dict(target))}
    want_opt = opt_state_target is not None
    if want_opt:
      if not (self._step_dir(step) / "opt_state").exists():
        raise CheckpointError(f"{self._step_dir(step)} has no optimizer state; restore without "
                              "opt_state_target or pick a training checkpoint")
      items["opt_state"] = ocp.args.StandardRestore(opt_state_target)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"{self._step_dir(step)}: cannot restore ({type(e).__name__}: {e}); the arrays do not "
          "match the saved config or the files are corrupt: delete that step directory or "
          "restore another step") from e
    nnx.replace_by_pure_dict(abstract, out["params"])
    return Restored(step=step, config=config, params=abstract,
                    opt_state=out["opt_state"] if want_opt else None, tokenizer_blob=blob)

  def restore_latest(self, **kwargs) -> Restored:
    """`restore` of the newest step (same keyword arguments)."""
    return self.restore(None, **kwargs)

  def close(self) -> None:
    self._manager.close()
