"""Decode throughput of the sampler and its share of the memory-bandwidth roofline.

Each decode step reads every weight and the whole KV cache once, so a step cannot be faster than
(weight bytes + cache bytes) / bandwidth. The bandwidth is --bandwidth_gbps, by default a
nominal figure for the detected device (printed with the result):

  python bench/sampler_bench.py --model=gemma3_270m --batch_size=8 --max_new_tokens=64
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from autollm_jax import memory, sampler as sampler_lib
from autollm_jax.model import config as config_lib
from autollm_jax.model import gguf_import, kv_cache, transformer

_MODEL = flags.DEFINE_string("model", "gemma3_270m", "Registry model name.")
_PRETRAINED = flags.DEFINE_bool("pretrained", False,
                                "Load GGUF weights (speed does not depend on them).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Sequences decoded together.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per sequence.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Decode steps.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "Parameter and activation dtype (default: the config's).")
_BANDWIDTH = flags.DEFINE_float("bandwidth_gbps", None,
                                "Memory bandwidth in GB/s (default: nominal for the device).")

# Nominal peak memory bandwidth, GB/s, by substring of jax's device_kind.
_NOMINAL_GBPS = (("H200", 4800.0), ("H100", 3350.0), ("A100", 2039.0), ("TPU v6", 1640.0),
                 ("TPU v5 lite", 819.0), ("TPU v5", 2765.0), ("TPU v4", 1200.0),
                 ("cpu", 20.0))


def nominal_bandwidth(device: jax.Device) -> tuple[float, str]:
  """(GB/s, where the figure comes from) for `device`."""
  kind = device.device_kind
  for key, gbps in _NOMINAL_GBPS:
    if key.lower() in kind.lower() or key == device.platform:
      return gbps, f"nominal for {kind}"
  return 20.0, f"unknown device {kind!r}: assumed"


def main(argv):
  del argv
  overrides = {"dtype": _DTYPE.value, "param_dtype": _DTYPE.value} if _DTYPE.value else {}
  config = config_lib.get_config(_MODEL.value, **overrides)
  batch, prompt_len, steps = _BATCH.value, _PROMPT_LEN.value, _MAX_NEW.value
  cache_len = prompt_len + steps
  print(memory.estimate(config, batch, cache_len).summary(), flush=True)
  if _PRETRAINED.value:
    params = gguf_import.load_pretrained(_MODEL.value, **overrides).params
  else:
    _, params = nnx.split(transformer.create_model(config))
  graphdef, _ = transformer.abstract_model(config)
  sampler = sampler_lib.Sampler(graphdef, config, pad_id=0)
  rng = np.random.default_rng(0)
  prompts = rng.integers(3, config.vocab_size, (batch, prompt_len)).tolist()
  sampling = sampler_lib.SamplingParams(max_new_tokens=steps)
  jax.block_until_ready(sampler(params, prompts, sampling))  # compile

  tokens, mask = sampler_lib.left_pad(prompts, 0)
  start = time.perf_counter()
  logits, positions, cache = jax.block_until_ready(sampler.prefill(
      params, jnp.asarray(tokens), jnp.asarray(mask), sampler.init_cache(batch, cache_len)))
  prefill_s = time.perf_counter() - start
  start = time.perf_counter()
  out = jax.block_until_ready(sampler.decode(
      params, logits, positions, cache, jax.random.key(0), sampling=sampling,
      stop_ids=jnp.zeros((0,), jnp.int32), pad_id=0))
  decode_s = time.perf_counter() - start
  step_s = decode_s / (steps - 1)  # the first token comes from the prefill logits

  weight_bytes = memory.estimate(config, batch, cache_len).param_bytes
  read_bytes = weight_bytes + kv_cache.cache_bytes(config, batch, cache_len)
  gbps, source = ((_BANDWIDTH.value, "from --bandwidth_gbps") if _BANDWIDTH.value
                  else nominal_bandwidth(jax.devices()[0]))
  achieved = read_bytes / step_s / 1e9
  print(f"{config.name} batch={batch} prompt={prompt_len} new={steps} dtype={config.dtype} "
        f"on {jax.devices()[0].device_kind}: prefill {prefill_s * 1e3:.1f} ms, decode "
        f"{batch * (steps - 1) / decode_s:.1f} tokens/s ({step_s * 1e3:.2f} ms/step), "
        f"{read_bytes / 1e6:.1f} MB read/step = {achieved:.1f} GB/s = "
        f"{100 * achieved / gbps:.1f}% of {gbps:.0f} GB/s ({source})")
  assert int(out.lengths.min()) == steps


if __name__ == "__main__":
  app.run(main)
