#!/usr/bin/env bash
# Every GPU number of docs/performance.md in one command, on one GPU:
#
#   bash benchmarks/gpu_all.sh PATH_TO_RELEASED_ECGAN OUT_DIR
#
# 1. At the same time: gpu_table.py's compile phase (each case of ours compiled into one
#    persistent cache, several at a time) and dtype_curve.py (the synthetic demo trained in float32
#    and in bfloat16, 300 steps each). Both are light on the GPU and heavy on the CPU.
# 2. Then, alone on the GPU: gpu_table.py's time phase (the reference and ours, one child at a
#    time, each of ours loading its program from the cache).
# Logs and JSON go to OUT_DIR: compile.log, dtype_curve.{log,json}, time.log, gpu_table.json.
# Budgets (seconds) are environment variables: COMPILE_S (1500), CURVE_S (1500), TIME_S (900),
# JOBS (3 compiles at a time). On an H200 host with 16 cores one B8 paper-size case alone took
# 91 s to initialise and 162 s to compile cold; five at a time did not finish in 300 s.
set -u
ref=${1:?usage: gpu_all.sh PATH_TO_RELEASED_ECGAN OUT_DIR}
out=${2:?usage: gpu_all.sh PATH_TO_RELEASED_ECGAN OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cache=$(mktemp -d)
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
table=(python3 "$here/gpu_table.py" "--reference=$ref" "--cache_dir=$cache" "--out=$out/gpu_table.json")

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import jax, flax, torch; print("jax", jax.__version__, "flax", flax.__version__, "torch", torch.__version__, jax.devices())'

compile_s=${COMPILE_S:-1500}
timeout "$compile_s" "${table[@]}" --phases=compile --jobs=${JOBS:-3} --child_timeout=$((compile_s - 20)) \
  > "$out/compile.log" 2>&1 &
compile_pid=$!
timeout "${CURVE_S:-1500}" python3 "$here/dtype_curve.py" --parallel --steps=300 \
  --workdir="$(mktemp -d)" --out="$out/dtype_curve.json" > "$out/dtype_curve.log" 2>&1 &
curve_pid=$!
wait $compile_pid; echo "compile phase exit $?"; cat "$out/compile.log"
wait $curve_pid; echo "dtype curve exit $?"; tail -n 30 "$out/dtype_curve.log"

time_s=${TIME_S:-900}
timeout "$time_s" "${table[@]}" --phases=time --deadline_s=$((time_s - 50)) 2>&1 | tee "$out/time.log"
