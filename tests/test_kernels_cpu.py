"""The CUDA kernels of kernels/*.cu, run on the CPU, against the NumPy reference.

The kernel source is compiled once per pytest run by g++ with the CUDA shim (tests/cuda_cpu/),
and every op of the cupy backend runs on it through ctypes: tagi/backends/cupy_backend.py is
imported against a numpy stand-in for cupy, so the backend's own grids, argument lists and
split-K workspaces run too. Every op (op_parity.OP_CASES) and two training steps of a small
CIFAR-like network are compared with the float64 reference, for float32 and float64 kernels,
on the fused-GEMM path without and with split-K, and on the cuBLAS path (gemm_settings).
Two training steps through the max-pool and leaky-ReLU layers run here and on the Numba backend.
"""
import inspect

import numpy as np
import pytest

from conftest import gaussian_tensors
from cuda_cpu import harness
from op_parity import (GEMM_PATHS, LINEAR_CASES, OP_CASES, check_op, check_training_steps,
                       linear_arrays, max_pool_leaky_net, op_arguments, replay_training_steps)
from tagi import models, nn
from tagi.backends import OPS
from tagi.backends import numpy_backend as ref
from tagi.loop import TrainStep, train_step

DTYPES = (np.float32, np.float64)


PATHS = tuple(GEMM_PATHS)


@pytest.fixture(scope="session")
def cupy_on_cpu(cpu_cuda):
    """The cupy backend on the CPU, on a device of 64 SMs."""
    return harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, 64))


def test_the_backend_on_the_cpu_keeps_the_op_contract(cupy_on_cpu):
    for op in OPS:
        assert inspect.signature(getattr(cupy_on_cpu, op)) == inspect.signature(getattr(ref, op)), op


# every op on the fused path; the conv2d and linear ops, which the paths change, on all three
OP_RUNS = [(path, *case) for case in OP_CASES
           for path in (PATHS if case[1].startswith(("conv2d", "linear")) else PATHS[:1])]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path, name, op, make_arrays, case, dropped", OP_RUNS,
                         ids=[f"{run[0]}-{run[1]}" for run in OP_RUNS])
def test_op_matches_the_reference(cupy_on_cpu, path, name, op, make_arrays, case, dropped, dtype):
    with cupy_on_cpu.gemm_settings(**GEMM_PATHS[path]):
        check_op(cupy_on_cpu, op, op_arguments(op, make_arrays, case, dropped), dtype)


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
def test_training_steps_match_the_reference(cupy_on_cpu, path, rng, dtype):
    x, labels = rng.standard_normal((5, 3, 8, 8)), rng.integers(0, 10, 5)
    with cupy_on_cpu.gemm_settings(**GEMM_PATHS[path]):
        check_training_steps(small_cifar_net, cupy_on_cpu, dtype, x, labels)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("backend", ["cuda_on_cpu", "numba"])
def test_max_pool_leaky_training_steps_match_the_reference(cupy_on_cpu, backend, rng, dtype):
    """Two training steps through MaxPool2d, LeakyReLU and MixtureLeakyReLU, on the kernels (here)
    and on the Numba backend, against the float64 reference."""
    x, labels = rng.standard_normal((4, 3, 8, 10)), rng.integers(0, 10, 4)
    check_training_steps(max_pool_leaky_net, cupy_on_cpu if backend == "cuda_on_cpu" else backend,
                         dtype, x, labels)


# ----------------------------------------------------------------------------- an H100 / H200

H100_H200_SMS = 132


@pytest.fixture(scope="module")
def h200(cpu_cuda):
    """The cupy backend on the CPU on an H100's / H200's 132 SMs, default GEMM settings."""
    return harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, H100_H200_SMS))


def cifar_net(backend, dtype):
    """The full 3-conv CIFAR-10 network (32x32 inputs), as the main job builds it."""
    return models.tagi_network(models.architecture("cifar10_3conv"), 11, backend=backend,
                               dtype=dtype, seed=0)


def dry_run_launches(cpu_cuda, run):
    """[(kernel, grid, block)] of every launch ``run(backend)`` makes on the H100/H200 geometry,
    each checked against the grid limits and the kernel's signature but not run."""
    launches = []
    run(harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, H100_H200_SMS, launches=launches)))
    return launches


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_h200_training_step_of_the_3conv_network_at_batch_16(cpu_cuda, h200, rng, dtype):
    """The main job's step (B = 16) with the split rule of a 132-SM GPU, against the float64
    reference: every parameter after the step, and the prior outputs. About 3 s per dtype."""
    x, labels = rng.standard_normal((16, 3, 32, 32)), rng.integers(0, 10, 16)

    def unchecked_step(backend):
        """tagi.loop.TrainStep called, without train_step's check: a dry run leaves outputs unset."""
        step = TrainStep(cifar_net(backend, "float32"), nn.HierarchicalSoftmax(10, backend=backend), 1.0)
        step.load(x, labels)
        step()

    launches = dry_run_launches(cpu_cuda, unchecked_step)
    split = {name for name, grid, _ in launches if grid[2] > 1}
    assert {"conv2d_forward_f32", "conv2d_backward_f32", "conv2d_param_deltas_f32"} <= split, split
    check_training_steps(cifar_net, h200, dtype, x, labels, steps=1)


def test_h200_inference_at_batch_1024(cpu_cuda, h200, rng):
    """Inference at B = 1,024 in its cheapest faithful form (the whole forward pass through the
    harness would take minutes, conv1 alone 20 s): every launch of the full network's forward
    pass, checked against the grid limits and the kernels' signatures (a dry run); then the
    network's tail (pool3, fc1, ReLU, fc2) run at B = 1,024 against the float64 reference.
    (The head's probabilities take the numpy path here: the harness's arrays are numpy arrays.)"""
    x = rng.standard_normal((1024, 3, 32, 32)).astype(np.float32)
    launches = dry_run_launches(cpu_cuda, lambda backend: cifar_net(backend, "float32").forward(x))
    assert {name for name, _, _ in launches} == {"conv2d_forward_f32", "relu_forward_f32",
                                                 "avgpool2d_forward_f32", "linear_forward_f32"}
    conv1 = (1024 * 32 * 32 // h200.GEMM_BM, 32 // h200.GEMM_BN, 1)   # M = B*H*W rows, one split
    assert [grid for name, grid, _ in launches if name == "conv2d_forward_f32"][0] == conv1

    def tail(backend, dtype):
        return nn.Sequential(nn.AvgPool2d(3, 2, padding=1, padding_type="bottom_right"),
                             nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 11),
                             input_shape=(64, 8, 8), backend=backend, dtype=dtype, seed=0)

    mu_x, var_x = gaussian_tensors(rng, (1024, 64, 8, 8))
    want_mu, want_var = tail("numpy", "float64").forward(mu_x, var_x)
    got_mu, got_var = tail(h200, "float32").forward(mu_x.astype(np.float32), var_x.astype(np.float32))
    for got, want in ((got_mu, want_mu), (got_var, want_var)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_split_k_counts_stay_within_the_grid_z_limit(cpu_cuda, h200):
    with h200.gemm_settings(blocks_per_sm=10_000, min_slices_per_split=1):
        # 100,000 slices would be 100,000 splits of one slice; z <= 65,535 makes them 2 slices each
        assert h200.gemm_splits(1, 1, h200.GEMM_BK * 100_000) == (2 * h200.GEMM_BK, 50_000)
    narrow = harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, H100_H200_SMS,
                                                         max_grid=(2 ** 31 - 1, 65_535, 3)))
    with narrow.gemm_settings(blocks_per_sm=10_000, min_slices_per_split=1):
        chunk, splits = narrow.gemm_splits(5, 11, 300)       # 19 slices: 3 splits, not 19
        assert (chunk, splits) == (7 * narrow.GEMM_BK, 3)
        for op in ("linear_forward", "linear_param_deltas"):  # launches past z = 3 would fail
            check_op(narrow, op, op_arguments(op, linear_arrays, LINEAR_CASES[2], ()), np.float64)


def test_without_a_usable_device_the_backend_does_not_import(cpu_cuda):
    """So get_backend("cupy") reports it unavailable (and tests skip it) where cupy is installed
    but no GPU answers."""
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    for count in (lambda: 0, no_driver):
        fake = harness.fake_cupy(cpu_cuda, 132)
        fake.cuda.runtime.getDeviceCount = count
        with pytest.raises(ImportError, match="cupy finds no (usable )?CUDA device"):
            harness.load_cupy_backend(fake)


def test_gemm_settings_apply_within_their_block_and_refuse_bad_values(cupy_on_cpu):
    with cupy_on_cpu.gemm_settings(blocks_per_sm=0) as settings:
        assert settings.blocks_per_sm == 0 and cupy_on_cpu.gemm_splits(64, 32, 16 * 64)[1] == 1
    assert cupy_on_cpu.gemm_splits(64, 32, 16 * 64)[1] > 1          # 64 SMs: the default splits
    with pytest.raises(ValueError, match="min_slices_per_split must be an int >= 1"):
        with cupy_on_cpu.gemm_settings(min_slices_per_split=0):
            pass
    with pytest.raises(TypeError, match="unexpected keyword argument 'splits'"):
        with cupy_on_cpu.gemm_settings(splits=2):
            pass


def test_capped_update_through_non_contiguous_views(cupy_on_cpu, rng):
    """Views of parameters (strided, transposed) are updated in place, the rest left alone."""
    mu, var = rng.standard_normal((6, 10)), 0.1 + rng.random((10, 6))
    delta_mu, delta_var = 2 * rng.standard_normal((6, 10)), -rng.random((5, 6))
    want_mu, want_var = mu.copy(), var.copy()
    ref.capped_update(want_mu[:, 1::2], want_var[::2].T, delta_mu[:, ::2], delta_var.T, 2.0)
    assert not np.array_equal(want_mu, mu) and not np.array_equal(want_var, var)
    cupy_on_cpu.capped_update(mu[:, 1::2], var[::2].T, delta_mu[:, ::2], delta_var.T, 2.0)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-12)
    np.testing.assert_allclose(var, want_var, rtol=1e-12)


class DeviceArray(np.ndarray):
    """Stands for cupy.ndarray, so that a plain numpy array is a host array."""


FIRST_CASE_OF_EACH_OP = list({case[1]: case for case in reversed(OP_CASES)}.values())


@pytest.mark.parametrize("name, op, make_arrays, case, dropped", FIRST_CASE_OF_EACH_OP,
                         ids=[case[1] for case in FIRST_CASE_OF_EACH_OP])
def test_a_host_array_is_refused_naming_the_op(cpu_cuda, name, op, make_arrays, case, dropped):
    strict = harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, H100_H200_SMS, ndarray=DeviceArray))
    args = op_arguments(op, make_arrays, case, dropped)
    with pytest.raises(TypeError, match=rf"{op}: \w+ is a host numpy array; use backend\.asarray"):
        getattr(strict, op)(*args)
    getattr(strict, op)(*(a.view(DeviceArray) if isinstance(a, np.ndarray) else a for a in args))


def test_capture_that_fails_replays_eagerly_after_one_logged_line(cupy_on_cpu, rng, caplog):
    """The harness cannot record a CUDA graph (as a machine without a GPU): ``capture`` logs why,
    once, and its replays run the step eagerly, like eager steps on the reference."""
    batches = [(rng.standard_normal((5, 3, 8, 8)), rng.integers(0, 10, 5)) for _ in range(3)]
    eager, graphed = small_cifar_net("numpy", "float64"), small_cifar_net(cupy_on_cpu, "float64")
    for x, labels in batches:
        train_step(eager, nn.HierarchicalSoftmax(10), x, labels, 1.0)
    graph = replay_training_steps(cupy_on_cpu, graphed, nn.HierarchicalSoftmax(10, backend=cupy_on_cpu),
                                  batches)
    assert not graph.captured and "cudaErrorNoDevice" in graph.reason
    logged = [r.getMessage() for r in caplog.records if "CUDA-graph capture" in r.getMessage()]
    assert len(logged) == 1 and "replaying it eagerly" in logged[0] and "\n" not in logged[0]
    got = graphed.state_dict()
    for key, want in eager.state_dict().items():
        np.testing.assert_allclose(got[key], want, rtol=1e-11, atol=1e-12, err_msg=key)
    assert [a.shape for a in graph.outputs] == [(5, 11), (5, 11)]      # the latest step's outputs


def test_the_gpu_benchmark_suite_runs_on_the_harness(h200, tmp_path):
    """benchmarks/gpu.py end to end, both modes, at toy sizes and with host wall time instead of
    CUDA events (no GPU here), so that its bugs show on any machine, not only on a GPU."""
    from benchmarks import gpu
    from benchmarks.timing import Plan
    rows = gpu.gpu_rows(h200, "float32", Plan(warmup=0, min_repeats=1, max_repeats=1), 1.0,
                        gpu.MODES, tmp_path, batch=2, infer_batch=2, epoch_images=4, clock=None)
    suites = [row["suite"] for row in rows]
    assert {"gpu_op", "gpu_step", "gpu_epoch", "gpu_inference"} == set(suites)
    assert all(row["median_s"] > 0 for row in rows)
    for mode in gpu.MODES:
        text = (tmp_path / f"gpu-{mode}.md").read_text()
        assert "conv2d_param_deltas" in text and "epoch of 2 steps" in text and "images/s" in text
    eager = (tmp_path / "gpu-eager.md").read_text()
    assert "| cublas | 2 | conv1 | conv2d_forward |" in eager and "capped_update" in eager


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
def probes(cpu_cuda):
    options = harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, 0), "cupy_kernels").KERNEL_OPTIONS
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
