"""GRPO train-step time and model FLOPs utilization (MFU).

Times the optimizer step that GRPO training runs (the GRPO loss over a random batch of
scored rollouts, AdamW on fp32 master weights) for a registry model with random weights. The
model computes in bf16 unless --dtype says otherwise; --remat and --scan_layers override the
config's rematerialization and layer loop. MFU = model FLOPs per step (3 x the forward's
matrix FLOPs with causal attention, `autollm_jax.roofline`) / step time / the chip's bf16
rate, measured by a large matrix product in this process unless --peak_tflops is given. The
last line reads `train step: ... MFU=<x>%`.

  python bench/train_bench.py --model=scratch_1b --batch=16 --seq_len=2048
  python bench/train_bench.py --model=scratch_1m --batch=4 --seq_len=1024 --dtype=float32 \
      --noscan_layers
"""

from __future__ import annotations

from absl import app
from absl import flags
import jax

from autollm_jax import benchmarks
from autollm_jax import roofline
from autollm_jax import sharding
from autollm_jax.model import config as config_lib
from autollm_jax.model import transformer

_MODEL = flags.DEFINE_string("model", "scratch_1b", "Registry model name.")
_BATCH = flags.DEFINE_integer("batch", 16, "Rows per optimizer step.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 2048, "Tokens per row.")
_ACCUM = flags.DEFINE_integer("grad_accum", 1, "Microbatches per step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after one compiling step).")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "Compute dtype.")
_REMAT = flags.DEFINE_bool("remat", None, "Rematerialize blocks (default: the config's).")
_SCAN = flags.DEFINE_bool("scan_layers", None,
                          "Scan over the blocks, or unroll them (default: the config's).")
_ATTENTION = flags.DEFINE_enum("attention", "auto", ["auto", "einsum", "cudnn", "xla"],
                               "ModelConfig.attention (auto: cuDNN's fused kernel on GPUs).")
_PEAK = flags.DEFINE_float("peak_tflops", None,
                           "The chip's rate in TFLOP/s (default: a measured bf16 matmul).")


def main(argv):
  del argv
  overrides = {"dtype": _DTYPE.value, "param_dtype": "float32", "attention": _ATTENTION.value}
  if _REMAT.value is not None:
    overrides["remat"] = _REMAT.value
  if _SCAN.value is not None:
    overrides["scan_layers"] = _SCAN.value
  config = config_lib.get_config(_MODEL.value, **overrides)
  peak = _PEAK.value or roofline.matmul_tflops()
  peak_source = "given" if _PEAK.value else "measured bf16 matmul"
  timing = benchmarks.time_grpo_step(config, _BATCH.value, _SEQ_LEN.value, _ACCUM.value,
                                     sharding.make_mesh(), _STEPS.value)
  device = jax.devices()[0]
  achieved = timing.model_flops / timing.seconds / 1e12
  memory = (device.memory_stats() or {}).get("peak_bytes_in_use")
  print(f"model={config.name} accum={_ACCUM.value} dtype={config.dtype}/{config.param_dtype} "
        f"devices={jax.device_count()}x{device.device_kind} jax={jax.__version__}"
        + (f" peak_memory={memory / 2**30:.1f}GiB" if memory else ""))
  print(f"train step: {config.name} {_BATCH.value}x{_SEQ_LEN.value} remat={config.remat} "
        f"scan_layers={config.scan_layers} "
        f"attention={transformer.fused_attention(config) or 'einsum'} "
        f"{timing.seconds * 1e3:.1f} ms, {timing.tokens / timing.seconds:.0f} tokens/s, "
        f"{achieved:.3g} model TFLOP/s, "
        f"MFU={100 * achieved / (peak * jax.device_count()):.1f}% of {peak:.3g} TFLOP/s per "
        f"device ({peak_source})")


if __name__ == "__main__":
  app.run(main)
