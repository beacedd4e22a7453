"""Finding, fetching and checking the gym's pinned source files.

The data folder is, in order: the `data_dir` argument (the `--gym_data_dir` flag), the
environment variable AUTOLLM_GYM_DATA, `../shared/gym_data` beside the project root, and
last the user cache (`$AUTOLLM_CACHE_DIR/gym_data`, else
`$XDG_CACHE_HOME/autollm_jax/gym_data`, else `~/.cache/autollm_jax/gym_data`), which the downloader fills from
the pinned upstream URLs in `gym/sources.json`. Every file is checked against its SHA-256
before it is read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import tempfile
import urllib.request

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
GYM_DIR = PROJECT_ROOT / "gym"
ENV_DATA_DIR = "AUTOLLM_GYM_DATA"
ENV_CACHE_DIR = "AUTOLLM_CACHE_DIR"


class GymDataError(ValueError):
  """A source file or task description is missing or wrong; the message says how to fix it."""


def cache_root() -> pathlib.Path:
  """The user cache: $AUTOLLM_CACHE_DIR, else $XDG_CACHE_HOME/autollm_jax, else ~/.cache/..."""
  if os.environ.get(ENV_CACHE_DIR):
    return pathlib.Path(os.environ[ENV_CACHE_DIR])
  xdg = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(xdg) / "autollm_jax"


@functools.lru_cache(maxsize=None)
def sources() -> dict[str, dict[str, str]]:
  """The pinned source files: relative path -> {repo, commit, path, sha256, license}."""
  with open(GYM_DIR / "sources.json") as f:
    return json.load(f)["files"]


def source_url(relpath: str) -> str:
  s = sources()[relpath]
  return f"https://raw.githubusercontent.com/{s['repo']}/{s['commit']}/{s['path']}"


def file_sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[pathlib.Path, str]:
  """The data folder and how it was chosen ("flag", "env", "shared" or "cache")."""
  if data_dir:
    return pathlib.Path(data_dir), "flag"
  if os.environ.get(ENV_DATA_DIR):
    return pathlib.Path(os.environ[ENV_DATA_DIR]), "env"
  shared = PROJECT_ROOT.parent / "shared" / "gym_data"
  if shared.is_dir():
    return shared, "shared"
  return cache_root() / "gym_data", "cache"


def download(relpath: str, dest: pathlib.Path) -> None:
  """Fetches one pinned file to `dest`, checking its SHA-256 before it is moved in place."""
  url = source_url(relpath)
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".")
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
      while block := response.read(1 << 20):
        out.write(block)
    got = file_sha256(pathlib.Path(tmp))
    if got != sources()[relpath]["sha256"]:
      raise GymDataError(f"downloaded {url} has SHA-256 {got}, expected "
                         f"{sources()[relpath]['sha256']} (pinned in {GYM_DIR / 'sources.json'})")
    os.replace(tmp, dest)
  except OSError as e:
    raise GymDataError(
        f"could not download {relpath} from {url} ({e}). Without internet, point the project "
        f"at a copy of the gym data with --gym_data_dir=DIR or {ENV_DATA_DIR}=DIR.") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def source_path(relpath: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The checked local path of a pinned source file, fetching it into the cache if needed.

  Args:
    relpath: the file's key in gym/sources.json, e.g. "steplaw/dense_lr_bs_loss.csv".
    data_dir: an explicit data folder (the --gym_data_dir flag), or None.
  Raises:
    GymDataError: the file is missing or its SHA-256 differs; the message names the file,
      the folder searched and the fix.
  """
  if relpath not in sources():
    raise GymDataError(f"{relpath} is not a pinned source file; known: {sorted(sources())}")
  root, how = resolve_data_dir(data_dir)
  path = root / relpath
  if not path.is_file():
    if how != "cache":
      chosen = {"flag": "--gym_data_dir", "env": f"${ENV_DATA_DIR}",
                "shared": "the default ../shared/gym_data"}[how]
      raise GymDataError(
          f"missing gym source file {relpath}: looked for {path} (data folder from {chosen}). "
          f"Fix: copy the file there (upstream: {source_url(relpath)}), or point "
          f"--gym_data_dir / ${ENV_DATA_DIR} at a folder that has it.")
    download(relpath, path)
  expected = sources()[relpath]["sha256"]
  got = file_sha256(path)
  if got != expected:
    raise GymDataError(
        f"{path} has SHA-256 {got}, but {relpath} is pinned to {expected} "
        f"({GYM_DIR / 'sources.json'}). The file is corrupt or another version: replace it "
        f"with {source_url(relpath)}.")
  return path
