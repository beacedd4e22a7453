"""Agents that configure experiments, by name: the baselines, trained policies and the
zero-shot LLM.

  agent = agents.make("teacher")
  agents.register("my_policy", my_factory, takes_checkpoint=True)
  agent = agents.make("my_policy", checkpoint=DIR)

Built-in agents are imported on first use, so an optional one (tpe needs optuna) costs
nothing until it is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from autollm_jax.agents.base import Agent


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: Callable[..., Agent] | str  # a callable, or "module:attribute" imported lazily
  takes_checkpoint: bool = False


_REGISTRY: dict[str, _Entry] = {
    "random": _Entry("autollm_jax.agents.random_search:RandomSearch"),
    "topk": _Entry("autollm_jax.agents.topk:TopKTransfer"),
    "teacher": _Entry("autollm_jax.agents.teacher:Teacher"),
    "gp": _Entry("autollm_jax.agents.gp_bo:GPBO"),
    "fsbo": _Entry("autollm_jax.agents.fsbo:FSBO"),
    "tpe": _Entry("autollm_jax.agents.tpe:TPE"),
    "policy": _Entry("autollm_jax.agents.policy:load", takes_checkpoint=True),
    "llm_zero_shot": _Entry("autollm_jax.agents.llm_zero_shot:load"),
}


def register(name: str, factory: Callable[..., Agent], takes_checkpoint: bool = False) -> None:
  """Adds an agent. A factory that takes a checkpoint is called as factory(checkpoint=path)."""
  if name in _REGISTRY:
    raise ValueError(f"agent {name!r} is already registered")
  _REGISTRY[name] = _Entry(factory, takes_checkpoint)


def names() -> tuple[str, ...]:
  return tuple(_REGISTRY)


def takes_checkpoint(name: str) -> bool:
  """Whether `make(name)` needs a checkpoint (a trained policy) to build the agent."""
  return _REGISTRY[name].takes_checkpoint


def make(name: str, checkpoint: str | None = None) -> Agent:
  """A new agent by name; `checkpoint` goes to agents that load one (and must be given)."""
  if name not in _REGISTRY:
    raise KeyError(f"unknown agent {name!r}; agents: {', '.join(_REGISTRY)}")
  entry = _REGISTRY[name]
  factory = entry.factory
  if isinstance(factory, str):
    module, attribute = factory.split(":")
    factory = getattr(importlib.import_module(module), attribute)
  if entry.takes_checkpoint:
    if not checkpoint:
      raise ValueError(f"agent {name!r} needs a checkpoint: pass --checkpoint=DIR")
    agent = factory(checkpoint=checkpoint)
  else:
    agent = factory()
  agent.name = name
  return agent
