"""The CUDA kernels of kernels/*.cu, run on the CPU, against the NumPy reference.

The kernel source is compiled once per session by g++ with the CUDA shim (tests/cuda_cpu/),
and every op of the cupy backend runs on it through ctypes: tagi/backends/cupy_backend.py is
imported against a numpy stand-in for cupy, so the backend's own grids, argument lists and
split-K workspaces run too. Every op (op_parity.OP_CASES) and two training steps of a small
CIFAR-like network are compared with the float64 reference, for float32 and float64 kernels,
on the fused-GEMM path without and with split-K, and on the cuBLAS path.
"""
import inspect

import numpy as np
import pytest

from cuda_cpu import harness
from op_parity import OP_CASES, check_op, check_training_steps, op_arguments
from tagi import nn
from tagi.backends import OPS
from tagi.backends import numpy_backend as ref

DTYPES = (np.float32, np.float64)
PATHS = ("fused", "split_k", "cublas")


@pytest.fixture(scope="session")
def backends(cpu_cuda):
    """The cupy backend on the CPU, per GEMM path: "fused" never splits a reduction,
    "split_k" splits every reduction it can, down to one GEMM_BK slice per block,
    "cublas" multiplies patch matrices."""
    out = {}
    for path in PATHS:
        module = harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, 0 if path == "fused" else 64))
        module.MIN_SLICES_PER_SPLIT = 1
        module.USE_CUBLAS = path == "cublas"
        out[path] = module
    return out


def test_the_backend_on_the_cpu_keeps_the_op_contract(backends):
    for op in OPS:
        assert inspect.signature(getattr(backends["fused"], op)) == inspect.signature(getattr(ref, op)), op


# every op on the fused path; the conv2d and linear ops, which the paths change, on all three
OP_RUNS = [(path, *case) for case in OP_CASES
           for path in (PATHS if case[1].startswith(("conv2d", "linear")) else PATHS[:1])]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path, name, op, make_arrays, case, dropped", OP_RUNS,
                         ids=[f"{run[0]}-{run[1]}" for run in OP_RUNS])
def test_op_matches_the_reference(backends, path, name, op, make_arrays, case, dropped, dtype):
    check_op(backends[path], op, op_arguments(op, make_arrays, case, dropped), dtype)


def small_cifar_net(backend, dtype):
    """The 3-conv CIFAR architecture (tagi.models), narrowed to 8x8 inputs and few channels."""
    pool = dict(kernel_size=3, stride=2, padding=1, padding_type="bottom_right")
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**pool),
        nn.Conv2d(4, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**pool),
        nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 11),
        input_shape=(3, 8, 8), backend=backend, dtype=dtype, seed=3)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path", PATHS)
def test_training_steps_match_the_reference(backends, path, rng, dtype):
    x, labels = rng.standard_normal((5, 3, 8, 8)), rng.integers(0, 10, 5)
    check_training_steps(small_cifar_net, backends[path], dtype, x, labels)


# ----------------------------------------------------------------------------- the harness can fail

HARNESS_PROBE = """
#include "tagi_common.cuh"
// y = x reversed within each block, through shared memory.
extern "C" __global__ void TAGI_NAME(reverse_blocks)(int n, const real* x, real* y) {
  __shared__ real tile[64];
  const int i = element_index();
  tile[threadIdx.x] = x[i];
  BARRIER;
  y[i] = tile[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void TAGI_NAME(divergent_barrier)(int n, const real* x, real* y) {
  if (threadIdx.x < 2)
    __syncthreads();
  else
    __syncthreads();
}
extern "C" __global__ void TAGI_NAME(write_past_the_end)(int n, const real* x, real* y) {
  y[n] = 1;
}
"""


@pytest.fixture(scope="module")
def probes(cpu_cuda, backends):
    options = backends["fused"].KERNEL_OPTIONS
    return {barrier: cpu_cuda.module(f"#define BARRIER {barrier}\n" + HARNESS_PROBE, options)
            for barrier in ("__syncthreads()", "")}


def test_harness_runs_barriers_and_a_missing_one_shows(probes):
    x, y = np.arange(128, dtype=np.float32), np.zeros(128, dtype=np.float32)
    reversed_blocks = np.concatenate([x[63::-1], x[:63:-1]])
    probes["__syncthreads()"].get_function("reverse_blocks_f32")((2,), (64,), (np.int32(128), x, y))
    np.testing.assert_array_equal(y, reversed_blocks)
    probes[""].get_function("reverse_blocks_f32")((2,), (64,), (np.int32(128), x, y))
    assert not np.array_equal(y, reversed_blocks)


def test_harness_catches_divergent_barriers_stray_writes_and_wrong_arguments(probes):
    module = probes["__syncthreads()"]
    x, y = np.zeros(8, dtype=np.float32), np.zeros(8, dtype=np.float32)
    with pytest.raises(RuntimeError, match="divergent __syncthreads"):
        module.get_function("divergent_barrier_f32")((1,), (8,), (np.int32(8), x, y))
    with pytest.raises(RuntimeError, match="wrote outside"):
        module.get_function("write_past_the_end_f32")((1,), (1,), (np.int32(8), x, y))
    with pytest.raises(TypeError, match="numpy.int32"):
        module.get_function("reverse_blocks_f32")((1,), (8,), (8, x, y))
    with pytest.raises(TypeError, match="float32 data"):
        module.get_function("reverse_blocks_f32")((1,), (8,), (np.int32(8), x.astype(np.float64), y))
