#!/usr/bin/env bash
# Every GPU check of the cupy backend in one call, for a lent GPU machine: each step has its own
# time limit, 8 minutes in all (not yet run on a GPU, so no measured duration).
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default $OUT, else outputs/gpu-check
#
# 1. gpu.txt            the GPU (nvidia-smi), Python, cupy, numpy, numba versions
# 2. tests.log          the GPU parity tests: tests/test_cupy_backend.py (every op on the three
#                       GEMM paths, a CIFAR training step, CUDA-graph replay) and the cupy cases
#                       of tests/test_backend_parity.py, against the float64 reference; a skipped
#                       test fails this step (on a GPU machine nothing may skip)
# 3. gpu_kernels.md     benchmarks/gpu_kernels.py: per-kernel time, GB/s and GFLOP/s; training
#                       step and epoch (target <= 3 s); inference at batch 1024 (target >= 200,000 img/s)
# 4. bench/             python -m benchmarks --quick on numpy and cupy: results.csv, summary.md,
#                       sweep.png (no epoch suite: it needs hydra-core and CIFAR-10 on the machine)
#
# Needs cupy, numpy, scipy, pandas, numba, tqdm, threadpoolctl, matplotlib, tabulate and pytest
# (all on this workplace's GPU image); not hydra-core, and nothing is installed: the checkout is
# put on PYTHONPATH. A step that fails or times out is reported and the next one still runs; the
# exit status is the number of failed steps. The last lines printed are the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-outputs/gpu-check}}
mkdir -p "$out/bench"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=$(command -v python3 || command -v python)
failed=0
summary=()

step() {  # step NAME SECONDS LOG COMMAND...: run with a time limit, tee the output into LOG
  local name=$1 limit=$2 log=$3 begin=$SECONDS status
  shift 3
  echo "=== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
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

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    || echo "nvidia-smi: not available"
  "$python" - <<'EOF'
import platform
print("python", platform.python_version())
for name in ("cupy", "numpy", "numba", "scipy", "pandas"):
    try:
        print(name, __import__(name).__version__)
    except ImportError as err:
        print(name, "MISSING:", err)
try:
    import cupy
    print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion(),
          "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as err:
    print("CUDA not usable:", err)
EOF
} 2>&1 | tee "$out/gpu.txt"

step "GPU parity tests" 200 "$out/tests.log" \
  "$python" -m pytest -q -rs -p no:cacheprovider -k cupy tests/test_cupy_backend.py \
  tests/test_backend_parity.py
fail_if "tests skipped or none passed (no usable GPU?)" tests_incomplete "$out/tests.log"
step "GPU kernel benchmark" 150 "$out/gpu_kernels.md" "$python" benchmarks/gpu_kernels.py
step "benchmark suite" 120 "$out/bench/log.txt" \
  "$python" -m benchmarks --quick --backends numpy,cupy --skip-epoch --out "$out/bench"
fail_if "the cupy backend was skipped" grep -q "skipped backend cupy" "$out/bench/log.txt"

echo "=== summary (files in $out)"
tail -1 "$out/tests.log"
grep -A4 "^## Training" "$out/gpu_kernels.md" | tail -3
printf '%s\n' "${summary[@]}"
exit "$failed"
