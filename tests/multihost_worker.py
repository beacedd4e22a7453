"""One process of the multi-host SFT test (tests/multihost_test.py starts two, or one).

Usage: python tests/multihost_worker.py WORKDIR OUT.npz
With JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set, the processes train
together on a mesh over all of their devices; the final parameters, gathered, go to OUT.npz.
"""

import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

from autollm_jax import sharding


def main(workdir: str, out: str) -> None:
  sharding.initialize_distributed()
  # Imported after JAX starts its distributed runtime.
  from sft_test import TINY, data, sft_config  # pylint: disable=g-import-not-at-top
  from autollm_jax.training import sft  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh(fsdp=len(jax.devices()))
  seqs, masks = data()
  params = sft.train(sft_config(total_steps=6), workdir, seqs, masks, TINY, b"tok", pad_id=0,
                     mesh=mesh, seed=1)
  gathered = multihost_utils.process_allgather(params, tiled=True)
  flat = {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(gathered)}
  if jax.process_index() == 0:
    np.savez(out, **flat)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
