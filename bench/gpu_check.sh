#!/usr/bin/env bash
# Every speed benchmark of bench/ in one run, each under its own timeout, one summary line each
# (env steps/s, decode tokens/s and HBM-roofline share, GRPO train-step MFU, rollout tokens/s,
# a few GRPO iterations of the gemma3_270m pipeline config).
#
#   bash bench/gpu_check.sh --prepare  # here, before the device call: the ml_collections wheel
#                                      # into .whl/ and the gym data into .gym_data/
#   bash bench/gpu_check.sh            # on the GPU machine (run tool, carry .whl and .gym_data)
#   bash bench/gpu_check.sh --attempts # on the GPU machine: the speed options tried, each
#                                      # beside its baseline (command buffers for decode, the
#                                      # einsum attention against the default cuDNN one)
#   bash bench/gpu_check.sh --smoke    # tiny sizes, on a CPU, in about 4 minutes
#
# Writes $OUT/summary.txt (card and versions, then one line per bench) and $OUT/logs.tgz (one
# <bench>.log each; OUT defaults to /tmp/gpu_check). No bench starts or runs past the total
# budget, GPU_CHECK_BUDGET_S seconds (default 540 on the GPU, 300 with --attempts, 900 with
# --smoke).
set -u
cd "$(dirname "$0")/.."
mode=${1:-gpu}
python=${PYTHON:-python3}

if [[ $mode == --prepare ]]; then
  set -e
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0
  rm -rf .gym_data
  cp -r "${AUTOLLM_GYM_DATA:-../shared/gym_data}" .gym_data
  echo "prepared: $(ls .whl) and .gym_data/ ($(du -sh .gym_data | cut -f1))"
  exit 0
fi

out=${OUT:-/tmp/gpu_check}
logs=$out/logs
rl_workdir=/tmp/gpu_check_rl_workdir
rm -rf "$logs" "$rl_workdir"
mkdir -p "$logs"
if ! "$python" -c "import ml_collections" 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[[ -d .gym_data ]] && export AUTOLLM_GYM_DATA=$PWD/.gym_data
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 TF_CPP_MIN_LOG_LEVEL=1

if [[ $mode == --smoke ]]; then
  export JAX_PLATFORMS=cpu
  budget=${GPU_CHECK_BUDGET_S:-900}
elif [[ $mode == --attempts ]]; then
  budget=${GPU_CHECK_BUDGET_S:-300}
else
  budget=${GPU_CHECK_BUDGET_S:-540}
fi
deadline=$((SECONDS + budget))
summary=$out/summary.txt
{
  echo "gpu_check $mode $(date -u +%FT%TZ) git $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  "$python" -c "import sys, jax, flax, optax; print('python', sys.version.split()[0], 'jax',
    jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$summary" 2>&1

# bench NAME TIMEOUT_S PATTERN SCRIPT ARGS...: runs SCRIPT, logs to NAME.log, and appends to
# the summary its last output line that starts with PATTERN (or why there is none).
bench() {
  local name=$1 cap=$2 pattern=$3
  shift 3
  local left=$((deadline - SECONDS))
  local limit=$((cap < left ? cap : left))
  if ((limit < 10)); then
    echo "$name: SKIPPED (total budget of ${budget}s spent)" >> "$summary"
    return
  fi
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$python" "$@" > "$logs/$name.log" 2>&1
  local rc=$? line
  line=$(grep "^$pattern" "$logs/$name.log" | tail -n 1)
  if [[ -n $line ]]; then
    echo "$name ($((SECONDS - start))s): $line" >> "$summary"
  elif ((rc == 124 || rc == 137)); then
    echo "$name: TIMEOUT after ${limit}s ($(tail -n 1 "$logs/$name.log"))" >> "$summary"
  else
    echo "$name: FAILED rc=$rc ($(tail -n 1 "$logs/$name.log"))" >> "$summary"
  fi
  tail -n 1 "$summary"
}

# XLA_FLAGS=... bench ...: that bench's process alone gets the flags. Command buffers (CUDA
# graphs) for the default command types plus while loops, so that a decode step's layer scan
# could be one graph launch (measured slower: bench/RESULTS.md).
cmdbuf="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"
decode_gemma3=(bench/sampler_bench.py --model=gemma3_270m --dtype=bfloat16 --prompt_len=64
               --max_new_tokens=128)
if [[ $mode == --attempts ]]; then
  bench decode_b64 60 "decode:" "${decode_gemma3[@]}" --batch_size=64
  XLA_FLAGS=$cmdbuf bench decode_b64_cmdbuf 60 "decode:" "${decode_gemma3[@]}" --batch_size=64
  bench train_scratch_1b_einsum 130 "train step:" bench/train_bench.py --model=scratch_1b \
    --batch=16 --seq_len=2048 --steps=5 --attention=einsum
  bench train_scratch_1b 100 "train step:" bench/train_bench.py --model=scratch_1b \
    --batch=16 --seq_len=2048 --steps=5
  bench train_gemma3_einsum 100 "train step:" bench/train_bench.py --model=gemma3_270m \
    --batch=8 --grad_accum=4 --seq_len=2048 --steps=5 --attention=einsum
  bench train_gemma3 80 "train step:" bench/train_bench.py --model=gemma3_270m \
    --batch=8 --grad_accum=4 --seq_len=2048 --steps=5
elif [[ $mode == --smoke ]]; then
  bench env 120 "env steps/s:" bench/env_bench.py --batch=512 --python_batch=128 --reps=3 \
    --rounds=1
  bench decode_b4 120 "decode:" bench/sampler_bench.py --model=scratch_1m --batch_size=4 \
    --prompt_len=16 --max_new_tokens=16 --reps=2
  bench train_remat 120 "train step:" bench/train_bench.py --model=scratch_1m --batch=4 \
    --seq_len=128 --remat --steps=2
  bench decode_b2 120 "decode:" bench/sampler_bench.py --model=scratch_1m --batch_size=2 \
    --prompt_len=16 --max_new_tokens=16 --reps=2
  bench train_accum_xla 120 "train step:" bench/train_bench.py --model=scratch_1m --batch=4 \
    --seq_len=128 --grad_accum=2 --steps=2 --attention=xla
  bench rollout 150 "rollout tokens/s:" bench/rollout_bench.py --batch=2 --turn_tokens=96 \
    --repeats=1 --dtype=bfloat16
  bench rl 240 "rl iteration:" bench/rl_bench.py --config=configs/mtrl.py \
    --config.data.max_train_experiments=8 --workdir="$rl_workdir" --sft_steps=2 \
    --iterations=2
else
  # The targets first (env, decode at batch 256, the ~1B train step), then the multi-turn
  # figures (rollout loops, GRPO iterations of the gemma3_270m config), then the rest.
  bench env 60 "env steps/s:" bench/env_bench.py --batch=65536 --python_batch=1024 --reps=20 \
    --rounds=2
  bench decode_gemma3_b256 70 "decode:" "${decode_gemma3[@]}" --batch_size=256
  bench train_scratch_1b 130 "train step:" bench/train_bench.py --model=scratch_1b \
    --batch=16 --seq_len=2048 --steps=5
  bench rollout_gemma3 100 "rollout tokens/s:" bench/rollout_bench.py --model=gemma3_270m \
    --dtype=bfloat16 --batch=128 --turn_tokens=256 --repeats=2
  # Its GGUF weights (253 MB) cannot travel to the device machine: random init, SentencePiece
  # vocabulary; 16 train experiments simulated once.
  bench rl_gemma3 150 "rl iteration:" bench/rl_bench.py --config=configs/mtrl_gemma3_270m.py \
    --config.model.checkpoint= --config.data.max_train_experiments=16 \
    --config.simulation.seeds="(0,)" --workdir="$rl_workdir" --sft_steps=4 --iterations=4
  bench decode_gemma3_b64 60 "decode:" "${decode_gemma3[@]}" --batch_size=64
  bench train_gemma3 100 "train step:" bench/train_bench.py --model=gemma3_270m --batch=8 \
    --grad_accum=4 --seq_len=2048 --steps=5
fi
tar -C "$out" -czf "$out/logs.tgz" logs && rm -rf "$logs"
echo "--- $summary"
cat "$summary"
