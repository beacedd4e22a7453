"""A cache of built TaskTables: zarr arrays written with tensorstore, keyed by the sources.

An entry lives in `<cache_root>/tables/<task>-<key>/`, where the key hashes the task's
definition and the SHA-256 of every source file, so a changed source or definition builds a
new entry. An entry is written to a temporary folder and renamed into place when complete,
so nothing half-built is ever read back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Callable

import numpy as np
import tensorstore as ts

from autollm_jax.gym import data
from autollm_jax.gym import table as table_lib

# Bump when the build code changes what a table holds.
BUILD_VERSION = 1
_ARRAYS = ("configs", "fidelity_index", "outcomes", "fidelity_scale", "aux")


def cache_key(definition: str, source_hashes: list[str]) -> str:
  """A short hash of a task's definition text and its sources' SHA-256 digests."""
  h = hashlib.sha256(f"v{BUILD_VERSION}\n{definition}\n".encode())
  for s in source_hashes:
    h.update(s.encode())
  return h.hexdigest()[:16]


def _write_array(path: pathlib.Path, array: np.ndarray) -> None:
  store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}},
                  create=True, dtype=array.dtype.name, shape=array.shape).result()
  store.write(array).result()


def _read_array(path: pathlib.Path) -> np.ndarray:
  store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}).result()
  return np.asarray(store.read().result())


def save(table: table_lib.TaskTable, entry: pathlib.Path) -> None:
  """Writes `table` as the cache entry folder `entry`, atomically."""
  entry.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=entry.parent, prefix=entry.name + ".tmp"))
  try:
    meta = {f.name: getattr(table, f.name) for f in dataclasses.fields(table)
            if f.name not in _ARRAYS}
    meta["params"] = [dataclasses.asdict(p) for p in table.params]
    meta["metrics"] = [dataclasses.asdict(m) for m in table.metrics]
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    for name in _ARRAYS:
      if getattr(table, name) is not None:
        _write_array(tmp / name, np.asarray(getattr(table, name)))
    os.replace(tmp, entry)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def load(entry: pathlib.Path) -> table_lib.TaskTable:
  """Reads a cache entry folder written by `save`."""
  meta = json.loads((entry / "meta.json").read_text())
  meta["params"] = tuple(table_lib.Param(p["name"], p["scale"], tuple(p["choices"]))
                         for p in meta["params"])
  meta["metrics"] = tuple(table_lib.Metric(**m) for m in meta["metrics"])
  for name in ("fidelity_names", "fidelity_scale_names", "aux_names"):
    meta[name] = tuple(meta[name])
  arrays = {n: _read_array(entry / n) if (entry / n).exists() else None for n in _ARRAYS}
  return table_lib.TaskTable(**meta, **arrays)


def cached_table(name: str, definition: str, source_paths: list[pathlib.Path],
                 build: Callable[[], table_lib.TaskTable]) -> table_lib.TaskTable:
  """The table from the cache, building and caching it first if the key has no entry.

  Args:
    name: the task's name (the entry's folder prefix).
    definition: text that fixes how the table is built (a spec's JSON).
    source_paths: the (already checked) source files it is built from.
    build: builds the table; an error it raises leaves the cache untouched.
  """
  key = cache_key(definition, [data.file_sha256(p) for p in source_paths])
  entry = data.cache_root() / "tables" / f"{name}-{key}"
  if (entry / "meta.json").is_file():
    return load(entry)
  table = build()
  save(table, entry)
  return table
