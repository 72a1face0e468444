#!/usr/bin/env bash
# Every GPU check of the cupy backend in one call: parity first, then eager timings, then
# CUDA-graph timings. Step limits 20 + 140 + 80 + 70 s (each killed 5 s after its limit): at
# most 5 min 50 s in all.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default $OUT, else outputs/gpu-check
#
# 1. gpu.txt     the GPU (nvidia-smi), Python, cupy, numpy, numba versions; without a usable GPU
#                the script says so and exits 0 here
# 2. tests.log   the GPU parity tests: tests/test_cupy_backend.py (every op on the three GEMM
#                paths, a CIFAR training step, CUDA-graph replay) and the cupy cases of
#                tests/test_backend_parity.py, against the float64 reference; a skipped test
#                fails this step (on a GPU machine nothing may skip)
# 3. eager/      python -m benchmarks --quick on cupy with the gpu suite in eager mode:
#                gpu-eager.md (every kernel's GPU time, wall time, GB/s or GFLOP/s on both GEMM
#                paths; training step; epoch of 3,125 steps; inference at batch 1,024),
#                results.csv, summary.md, log.txt
# 4. graph/      the same with CUDA-graph replays (gpu-graph.md; target: epoch <= 1 s on an
#                H200, inference >= 200,000 images/s)
#
# The gpu suite appends each line to gpu-MODE.md as it is measured, so a step cut short keeps
# what it finished, and a failed step does not stop the next one. Needs cupy, numpy, scipy,
# pandas, numba, tqdm, threadpoolctl, matplotlib, tabulate and pytest; not hydra-core, and
# nothing is installed: the checkout is put on PYTHONPATH. The exit status is the number of
# failed steps; the last lines printed are the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-outputs/gpu-check}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=$(command -v python3 || command -v python)
failed=0
summary=()

step() {  # step NAME SECONDS LOG COMMAND...: run with a time limit, tee the output into LOG
  local name=$1 limit=$2 log=$3 begin=$SECONDS status
  shift 3
  echo "=== $name (limit ${limit} s)"
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  case $status in
    0) summary+=("$name: ok, $((SECONDS - begin)) s") ;;
    124|137) summary+=("$name: TIMED OUT after $limit s"); failed=$((failed + 1)) ;;
    *) summary+=("$name: FAILED (exit $status), $((SECONDS - begin)) s"); failed=$((failed + 1)) ;;
  esac
}

tests_incomplete() {  # tests_incomplete LOG: pytest's LOG shows a skip, or no test passed
  ! grep -qE "[0-9]+ passed" "$1" || grep -qE "[0-9]+ skipped" "$1"
}

fail_if() {  # fail_if MESSAGE COMMAND...: when COMMAND succeeds, the last step fails with MESSAGE
  local message=$1
  shift
  if "$@"; then
    [[ ${summary[-1]} == *": ok, "* ]] && failed=$((failed + 1))
    summary[-1]="${summary[-1]%%:*}: FAILED, $message"
  fi
}

step "versions" 20 "$out/gpu.txt" bash -c '
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null \
    || echo "nvidia-smi: not available"
  "$0" - <<"PY"
import platform
print("python", platform.python_version())
for name in ("cupy", "numpy", "numba", "scipy", "pandas"):
    try:
        print(name, __import__(name).__version__)
    except ImportError as err:
        print(name, "MISSING:", err)
try:
    import cupy
    print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver",
          cupy.cuda.runtime.driverGetVersion(), "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as err:
    print("no usable GPU:", " ".join(str(err).split()))
PY' "$python"
if ! grep -qE "^CUDA runtime .* devices [1-9]" "$out/gpu.txt"; then
  echo "=== no usable GPU here ($(grep -E "^(no usable GPU|cupy MISSING)" "$out/gpu.txt" | head -1)):" \
       "nothing to check; $out/gpu.txt says what was found"
  exit 0
fi

step "GPU parity tests" 140 "$out/tests.log" \
  "$python" -m pytest -q -rs -p no:cacheprovider tests/test_cupy_backend.py \
  tests/test_backend_parity.py -k cupy
fail_if "tests skipped or none passed" tests_incomplete "$out/tests.log"
for mode in eager graph; do
  limit=$([[ $mode == eager ]] && echo 80 || echo 70)
  mkdir -p "$out/$mode"
  step "$mode timings" "$limit" "$out/$mode/log.txt" \
    "$python" -m benchmarks --quick --backends cupy --skip-ops --skip-epoch --sweep "" \
    --gpu-modes "$mode" --out "$out/$mode"
  fail_if "the cupy backend was skipped" grep -q "skipped backend cupy" "$out/$mode/log.txt"
done

echo "=== summary (files in $out)"
tail -1 "$out/tests.log"
grep -hE "train_step|epoch of|images/s" "$out"/eager/gpu-eager.md "$out"/graph/gpu-graph.md 2>/dev/null
printf '%s\n' "${summary[@]}"
exit "$failed"
