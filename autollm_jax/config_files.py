"""Loading config files (configs/*.py) by path: configs/ is not an installed package, so a
config that builds on another, and a test that reads one, load it with `load_module`."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import types


def load_module(path: str | os.PathLike) -> types.ModuleType:
  """The config file at `path` as a module (its get_config() builds the ConfigDict)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(config_file: str, name: str) -> types.ModuleType:
  """The config `name` in the folder of `config_file` (pass a config's own __file__)."""
  return load_module(pathlib.Path(config_file).with_name(name))
