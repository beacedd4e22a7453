"""Decode throughput of the sampler and its share of the memory-bandwidth (HBM) roofline.

Each decode step reads every weight and the whole KV cache once, so a step cannot be faster than
(weight bytes + cache bytes) / bandwidth (`roofline.decode_bytes_per_step`). The bandwidth is
measured in this process (an elementwise pass over a large array, bytes read plus written)
unless --bandwidth_gbps is given. Every row samples --max_new_tokens tokens (no stop token)
after a random prompt. The last line reads `decode: ... tokens/s ... <x>% of the roofline`.

  python bench/sampler_bench.py --model=gemma3_270m --dtype=bfloat16 --batch_size=256
"""

from __future__ import annotations

import jax
from absl import app, flags
from flax import nnx

from autollm_jax import benchmarks, memory, roofline
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

_MODEL = flags.DEFINE_string("model", "gemma3_270m", "Registry model name.")
_PRETRAINED = flags.DEFINE_bool("pretrained", False,
                                "Load GGUF weights (speed does not depend on them).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Sequences decoded together.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per sequence.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Tokens sampled per sequence.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: greedy).")
_REPS = flags.DEFINE_integer("reps", 3, "Timed repetitions (after one compiling run).")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "Parameter and activation dtype (default: the config's).")
_BANDWIDTH = flags.DEFINE_float("bandwidth_gbps", None,
                                "Memory bandwidth in GB/s (default: measured by a copy).")


def main(argv):
  del argv
  overrides = {"dtype": _DTYPE.value, "param_dtype": _DTYPE.value} if _DTYPE.value else {}
  config = config_lib.get_config(_MODEL.value, **overrides)
  batch, prompt_len, steps = _BATCH.value, _PROMPT_LEN.value, _MAX_NEW.value
  print(memory.estimate(config, batch, prompt_len + steps).summary(), flush=True)
  if _PRETRAINED.value:
    # Imported here: it needs the model-import extra (gguf), which a bare GPU image lacks.
    from autollm_jax.model import gguf_import  # pylint: disable=import-outside-toplevel
    params = gguf_import.load_pretrained(_MODEL.value, **overrides).params
  else:
    _, params = nnx.split(transformer.create_model(config))
  gbps = _BANDWIDTH.value or roofline.copy_gbps()
  source = "given" if _BANDWIDTH.value else "measured copy"
  timing = benchmarks.time_decode(config, params, batch, prompt_len, steps,
                                  _TEMPERATURE.value, _REPS.value)
  achieved = timing.read_bytes / timing.step_seconds / 1e9
  print(f"{config.name} batch={batch} prompt={prompt_len} new={steps} dtype={config.dtype} "
        f"temperature={_TEMPERATURE.value} on {jax.devices()[0].device_kind} "
        f"jax={jax.__version__}: prefill {timing.prefill_seconds * 1e3:.1f} ms")
  print(f"decode: {config.name} batch={batch} {batch / timing.step_seconds:.0f} tokens/s "
        f"({timing.step_seconds * 1e3:.2f} ms/step), {timing.read_bytes / 1e6:.1f} MB read/step "
        f"= {achieved:.1f} GB/s = {100 * achieved / gbps:.1f}% of the roofline "
        f"({gbps:.0f} GB/s, {source})")


if __name__ == "__main__":
  app.run(main)
