"""pytest setup: 8 fake CPU devices for the sharding tests (must be set before JAX starts)."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Built task tables go to a fresh cache, not the user's, removed when the tests end.
if "AUTOLLM_CACHE_DIR" not in os.environ:
  os.environ["AUTOLLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="autollm-test-cache-")
  atexit.register(shutil.rmtree, os.environ["AUTOLLM_CACHE_DIR"], ignore_errors=True)

from absl import flags  # noqa: E402

# absltest helpers (create_tempdir, flag defaults) read absl flags, which pytest never parses.
flags.FLAGS.mark_as_parsed()
