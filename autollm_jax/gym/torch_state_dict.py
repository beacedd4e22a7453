"""Reads a PyTorch `state_dict` file (.pt, zip format) into NumPy arrays, without torch.

A .pt file is a zip archive holding `data.pkl` (a pickle whose tensors refer to storages by
key) and one raw little-endian buffer per storage under `data/<key>`. Only the classes a
plain state_dict of dense tensors uses are allowed in the pickle, so loading is safe.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "BoolStorage": np.bool_,
}


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2 on a NumPy buffer: a strided view, copied."""
  itemsize = storage.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


class _StateDictUnpickler(pickle.Unpickler):

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
    super().__init__(file)
    self._archive = archive
    self._prefix = prefix

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a plain state_dict")

  def persistent_load(self, pid):
    kind, dtype, key, unused_location, unused_numel = pid
    if kind != "storage":
      raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
    raw = self._archive.read(f"{self._prefix}data/{key}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """name -> array for every tensor of a .pt state_dict (zip serialization, torch >= 1.6)."""
  with zipfile.ZipFile(path) as archive:
    pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    with archive.open(pkl) as f:
      state = _StateDictUnpickler(f, archive, prefix).load()
  return {k: np.asarray(v) for k, v in state.items()}
