"""Downloads the gym's pinned source files and checks their SHA-256 (needs internet).

  python launch/fetch_gym_data.py                 # into the user cache, where the gym looks last
  python launch/fetch_gym_data.py --dest=DIR      # into DIR; then use --gym_data_dir=DIR
"""

import pathlib
import sys

from absl import app
from absl import flags

from autollm_jax.gym import data

DEST = flags.DEFINE_string("dest", None, "Target folder (default: the user cache).")


def main(argv):
  del argv
  dest = pathlib.Path(DEST.value) if DEST.value else data.cache_root() / "gym_data"
  for relpath, source in data.sources().items():
    path = dest / relpath
    if path.is_file() and data.file_sha256(path) == source["sha256"]:
      print(f"ok        {path}")
      continue
    try:
      data.download(relpath, path)
    except data.GymDataError as e:
      sys.exit(f"error: {e}")
    print(f"fetched   {path} ({source['license']})")


if __name__ == "__main__":
  app.run(main)
