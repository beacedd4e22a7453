"""Training metrics: logged through absl and appended as JSON lines to `<workdir>/metrics.jsonl`."""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Mapping

from absl import logging


class MetricsWriter:
  """Writes one record per call: {"stage", "step", "time", **scalars}."""

  def __init__(self, workdir: str | os.PathLike, stage: str):
    self._path = pathlib.Path(workdir) / "metrics.jsonl"
    self._path.parent.mkdir(parents=True, exist_ok=True)
    self._stage = stage

  @property
  def path(self) -> pathlib.Path:
    return self._path

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    record = {"stage": self._stage, "step": int(step), "time": time.time()}
    record.update({k: float(v) for k, v in scalars.items()})
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info("[%s] step %d: %s", self._stage, step,
                 ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))


def read_metrics(workdir: str | os.PathLike, stage: str | None = None) -> list[dict]:
  """The records of `<workdir>/metrics.jsonl`, optionally of one stage."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [r for r in records if stage is None or r["stage"] == stage]
