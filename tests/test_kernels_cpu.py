"""The CUDA kernels of kernels/*.cu, run on the CPU, against the NumPy reference.

The kernel source is compiled once per session by g++ with the CUDA shim (tests/cuda_cpu/),
and every op of the cupy backend runs on it through ctypes: tagi/backends/cupy_backend.py is
imported against a numpy stand-in for cupy, so the backend's own grids, argument lists and
split-K workspaces run too. Ops are compared with numpy_backend (in float64) for float32 and
float64 kernels, on the fused-GEMM path without and with split-K and on the cuBLAS path.
"""
import inspect

import numpy as np
import pytest

from conftest import gaussian_tensors
from cuda_cpu import harness
from tagi import nn
from tagi.backends import OPS
from tagi.backends import numpy_backend as ref
from tagi.geometry import window2d

DTYPES = (np.float32, np.float64)
PATHS = ("fused", "split_k", "cublas")

# (C, H, W, C_out, kernel, stride, padding, padding_type)
CONV_CASES = [
    (2, 5, 5, 3, 3, 1, 1, "symmetric"),
    (3, 7, 6, 2, 3, 2, 1, "symmetric"),       # H != W, stride 2
    (2, 6, 6, 3, 3, 2, 1, "bottom_right"),    # cuTAGI padding type 2
    (3, 8, 8, 33, 5, 1, 2, "symmetric"),      # two output-channel tiles, two position tiles
    (6, 6, 6, 4, 5, 1, 2, "symmetric"),       # patch of 150 cells: the forward reduction splits
    (2, 4, 5, 2, 1, 1, 0, "symmetric"),       # 1x1 kernel
]
POOL_CASES = [
    (2, 8, 8, 3, 2, 1, "bottom_right"),       # the CIFAR pool
    (3, 7, 7, 3, 2, 1, "symmetric"),
    (1, 9, 7, 3, 1, 1, "bottom_right"),
    (2, 6, 6, 2, 2, 0, "symmetric"),
]
LINEAR_CASES = [(3, 5, 4), (70, 37, 33), (5, 300, 11)]   # (B, N_in, N_out)


@pytest.fixture(scope="session")
def cpu_cuda(tmp_path_factory):
    """The g++ build of the kernels, float32 and float64 compiled side by side."""
    cuda = harness.CpuCuda(tmp_path_factory.mktemp("cuda_cpu"))
    probe = harness.load_cupy_backend(harness.fake_cupy(cuda, 0))
    cuda.compile([(probe.kernel_source(dtype), probe.KERNEL_OPTIONS) for dtype in DTYPES])
    return cuda


@pytest.fixture(scope="session")
def backends(cpu_cuda):
    """The cupy backend on the CPU, per GEMM path: "fused" never splits a reduction,
    "split_k" splits every one it can into single slices, "cublas" uses patch matrices."""
    out = {}
    for path in PATHS:
        module = harness.load_cupy_backend(harness.fake_cupy(cpu_cuda, 0 if path == "fused" else 64))
        module.MIN_SLICES_PER_SPLIT = 1
        module.USE_CUBLAS = path == "cublas"
        out[path] = module
    return out


@pytest.fixture(params=PATHS)
def gemm_backend(request, backends):
    return backends[request.param]


@pytest.fixture
def backend(backends):
    return backends["fused"]


def cast(dtype, *arrays):
    return [None if a is None else np.asarray(a, dtype=dtype) for a in arrays]


def assert_close(got, want, dtype):
    """got (kernel, dtype) against want (reference, float64), relative to the scale of want."""
    if want is None:
        assert got is None
        return
    assert got is not None and got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def assert_all_close(got, want, dtype):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, dtype)


def conv_case(rng, case, batch=2):
    c, h, w, c_out, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w))
    mu_w, var_w = gaussian_tensors(rng, (c_out, c, k, k))
    mu_b, var_b = gaussian_tensors(rng, (c_out,))
    deltas = (rng.standard_normal((batch, c_out, g.out_height, g.out_width)),
              -rng.random((batch, c_out, g.out_height, g.out_width)))
    return g, (mu_a, var_a, mu_w, var_w, mu_b, var_b), deltas


# ----------------------------------------------------------------------------- the backend module

def test_backend_on_the_cpu_keeps_the_op_contract(backend):
    for op in OPS:
        assert inspect.signature(getattr(backend, op)) == inspect.signature(getattr(ref, op)), op
    assert backend.NAME == "cupy"


# ----------------------------------------------------------------------------- conv2d and linear (fused GEMM)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("mode", ["full", "exact_input", "mean_only"])
def test_conv2d_forward(gemm_backend, rng, case, mode, dtype):
    g, (mu_a, var_a, mu_w, var_w, mu_b, var_b), _ = conv_case(rng, case)
    if mode != "full":
        var_a = None
    if mode == "mean_only":
        var_w = var_b = None
    args = (mu_a, var_a, mu_w, var_w, mu_b, var_b)
    assert_all_close(gemm_backend.conv2d_forward(*cast(dtype, *args), g),
                     ref.conv2d_forward(*args, g), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("mean_only", [False, True])
def test_conv2d_backward(gemm_backend, rng, case, mean_only, dtype):
    g, (_, _, mu_w, *_), (delta_mu, delta_var) = conv_case(rng, case)
    delta_var = None if mean_only else delta_var
    assert_all_close(gemm_backend.conv2d_backward(*cast(dtype, delta_mu, delta_var, mu_w), g),
                     ref.conv2d_backward(delta_mu, delta_var, mu_w, g), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("mode", ["full", "mean_only", "unscaled"])
def test_conv2d_param_deltas(gemm_backend, rng, case, mode, dtype):
    g, (mu_a, _, _, var_w, _, var_b), (delta_mu, delta_var) = conv_case(rng, case)
    if mode == "mean_only":
        delta_var = None
    if mode == "unscaled":
        var_w = var_b = None
    args = (mu_a, delta_mu, delta_var, var_w, var_b)
    assert_all_close(gemm_backend.conv2d_param_deltas(*cast(dtype, *args), g),
                     ref.conv2d_param_deltas(*args, g), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR_CASES)
def test_linear_ops(gemm_backend, rng, case, dtype):
    batch, n_in, n_out = case
    mu_a, var_a = gaussian_tensors(rng, (batch, n_in))
    mu_w, var_w = gaussian_tensors(rng, (n_out, n_in))
    mu_b, var_b = gaussian_tensors(rng, (n_out,))
    delta_mu, delta_var = rng.standard_normal((batch, n_out)), -rng.random((batch, n_out))
    for args in [(mu_a, var_a, mu_w, var_w, mu_b, var_b), (mu_a, None, mu_w, var_w, mu_b, var_b),
                 (mu_a, var_a, mu_w, None, mu_b, None)]:
        assert_all_close(gemm_backend.linear_forward(*cast(dtype, *args)), ref.linear_forward(*args), dtype)
    for args in [(delta_mu, delta_var, mu_w), (delta_mu, None, mu_w)]:
        assert_all_close(gemm_backend.linear_backward(*cast(dtype, *args)), ref.linear_backward(*args), dtype)
    for args in [(mu_a, delta_mu, delta_var, var_w, var_b), (mu_a, delta_mu, None, var_w, var_b),
                 (mu_a, delta_mu, delta_var, None, None)]:
        assert_all_close(gemm_backend.linear_param_deltas(*cast(dtype, *args)),
                         ref.linear_param_deltas(*args), dtype)


# ----------------------------------------------------------------------------- pooling, activations, output, step

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_avgpool2d(backend, rng, case, dtype):
    c, h, w, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (3, c, h, w))
    delta_mu, delta_var = rng.standard_normal((3, c, g.out_height, g.out_width)), \
        -rng.random((3, c, g.out_height, g.out_width))
    for args in [(mu_a, var_a), (mu_a, None)]:
        assert_all_close(backend.avgpool2d_forward(*cast(dtype, *args), g), ref.avgpool2d_forward(*args, g), dtype)
    for args in [(delta_mu, delta_var), (delta_mu, None)]:
        assert_all_close(backend.avgpool2d_backward(*cast(dtype, *args), g), ref.avgpool2d_backward(*args, g), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations(backend, rng, dtype):
    mu_z, var_z = gaussian_tensors(rng, (4, 3, 5, 7))
    delta_mu, delta_var = rng.standard_normal(mu_z.shape), -rng.random(mu_z.shape)
    for args in [(mu_z, var_z), (mu_z, None)]:
        assert_all_close(backend.relu_forward(*cast(dtype, *args)), ref.relu_forward(*args), dtype)
    got = backend.mixture_relu_forward(*cast(dtype, mu_z, var_z))
    want = ref.mixture_relu_forward(mu_z, var_z)
    for g, w in zip(got, want):   # Phi in float32 (normcdff) against scipy's float64 ndtr
        np.testing.assert_allclose(g, w, rtol=5e-6 if dtype == np.float32 else 1e-12, atol=1e-7)
    jac = rng.random(mu_z.shape)
    for args in [(delta_mu, delta_var, jac), (delta_mu, None, jac)]:
        assert_all_close(backend.scale_by_jacobian(*cast(dtype, *args)), ref.scale_by_jacobian(*args), dtype)
    x = 3 * rng.standard_normal((6, 10, 4))
    np.testing.assert_allclose(backend.normal_cdf(x.astype(dtype)), ref.normal_cdf(x),
                               rtol=5e-6 if dtype == np.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_innovations(backend, rng, dtype):
    mu, var = gaussian_tensors(rng, (5, 11))
    y = np.where(rng.random((5, 11)) < 0.4, np.nan, np.sign(rng.standard_normal((5, 11))))
    var[0, 0], var[1, 1] = np.inf, np.nan       # non-finite S: zero innovations
    assert_all_close(backend.gaussian_innovations(*cast(dtype, mu, var, y), 0.7),
                     ref.gaussian_innovations(mu, var, y, 0.7), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_capped_update(backend, rng, dtype):
    mu, var = gaussian_tensors(rng, (7, 9))
    var[0, :3] = 1e-4                                   # small variances: the floor kicks in
    delta_mu, delta_var = 2 * rng.standard_normal(mu.shape), -rng.random(mu.shape)
    want_mu, want_var = mu.copy(), var.copy()
    ref.capped_update(want_mu, want_var, delta_mu, delta_var, 2.0)
    got_mu, got_var = cast(dtype, mu, var)
    backend.capped_update(got_mu, got_var, *cast(dtype, delta_mu, delta_var), 2.0)
    assert (want_var[0, :3] == 1e-5).all()
    assert_close(got_mu, want_mu, dtype)
    assert_close(got_var, want_var, dtype)


# ----------------------------------------------------------------------------- a whole training step

def small_cifar_net(backend, dtype):
    """The 3-conv CIFAR architecture, narrowed to 8x8 inputs and few channels."""
    pool = dict(kernel_size=3, stride=2, padding=1, padding_type="bottom_right")
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**pool),
        nn.Conv2d(4, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**pool),
        nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 11),
        input_shape=(3, 8, 8), backend=backend, dtype=np.dtype(dtype).name, seed=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_step_matches_the_reference(gemm_backend, rng, dtype):
    x, labels = rng.standard_normal((5, 3, 8, 8)), rng.integers(0, 10, 5)
    head = nn.HierarchicalSoftmax(10)
    nets = [small_cifar_net("numpy", np.float64), small_cifar_net(gemm_backend, dtype)]
    outputs = []
    for net in nets:
        for _ in range(2):
            mu, var = net.forward(x)
            net.backward(*head.innovations(mu, var, labels, sigma_v=1.0))
            net.step()
        outputs.append((mu, var))
    assert_all_close(outputs[1], outputs[0], dtype)
    want, got = nets[0].state_dict(), nets[1].state_dict()
    for key in want:
        tol = 2e-5 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(got[key], want[key], rtol=tol,
                                   atol=tol * np.abs(want[key]).max(), err_msg=key)


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


def test_harness_runs_barriers_and_catches_a_missing_one(probes):
    x, y = np.arange(128, dtype=np.float32), np.zeros(128, dtype=np.float32)
    args = (np.int32(128), x, y)
    probes["__syncthreads()"].get_function("reverse_blocks_f32")((2,), (64,), args)
    np.testing.assert_array_equal(y, np.concatenate([x[63::-1], x[:63:-1]]))
    probes[""].get_function("reverse_blocks_f32")((2,), (64,), args)
    assert not np.array_equal(y, np.concatenate([x[63::-1], x[:63:-1]]))


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
