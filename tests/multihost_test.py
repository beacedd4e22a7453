"""Two CPU processes on localhost train a tiny config together (jax.distributed) and end with
the same parameters as one process with the same number of devices."""

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
from absl.testing import absltest

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class MultiHostTest(absltest.TestCase):

  def run_workers(self, processes: int, devices_per_process: int) -> dict[str, np.ndarray]:
    workdir = self.create_tempdir().full_path
    out = os.path.join(workdir, "params.npz")
    port = free_port()
    procs = []
    for i in range(processes):
      env = dict(os.environ, JAX_PLATFORMS="cpu",
                 XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
                 PYTHONPATH=str(WORKER.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
      if processes > 1:
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
      procs.append(subprocess.Popen([sys.executable, str(WORKER), workdir + "/run", out],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True))
    for p in procs:
      output, _ = p.communicate(timeout=600)
      self.assertEqual(p.returncode, 0, output[-3000:])
    with np.load(out) as f:
      return dict(f)

  def test_two_processes_match_one(self):
    together = self.run_workers(processes=2, devices_per_process=1)
    alone = self.run_workers(processes=1, devices_per_process=2)
    self.assertEqual(together.keys(), alone.keys())
    for name in alone:
      np.testing.assert_allclose(together[name], alone[name], atol=1e-5, err_msg=name)


if __name__ == "__main__":
  absltest.main()
