"""CuPy backend: the TAGI ops as raw CUDA kernels (``kernels/*.cu``) on cupy arrays.

Same op names, signatures and ``None`` conventions as the NumPy reference
(``numpy_backend.py``), on cupy arrays. Every op only queues kernels on the
current stream and returns: no op synchronises with the host or copies between
host and device. ``asarray`` (host -> device), ``to_numpy`` (device -> host)
and ``synchronize`` are the only crossings.

Kernels. The files of ``kernels/`` form one CUDA translation unit, compiled by
NVRTC once per floating type (``float32``: names ``*_f32``; ``float64``:
``*_f64``) when first used; CuPy caches the binaries on disk, keyed by the
source text.

GEMM-shaped products (conv2d and linear: forward moments, input innovations,
parameter deltas) run by default as fused Gaussian-GEMM kernels
(``kernels/tagi_gemm.cuh``): one launch computes means and variances together,
gathering its operands straight from the NCHW maps; when the output has too few
tiles to fill the GPU (batch 16, parameter deltas) the reduction is split over
more blocks and a second launch adds the parts in a fixed order. With
``USE_CUBLAS = True`` they run as the reference's formulas instead: patch
matrices (im2col / col2im kernels) multiplied by cuBLAS through
``cupy.matmul``. Both paths agree to round-off; ``benchmarks/gpu_kernels.py``
times both.

``capture(fn)`` records a function of device arrays (a whole training step) as
a CUDA graph and replays it with one launch, see ``CapturedGraph``.
"""
import functools
import re
from pathlib import Path

import cupy
import numpy as np

import tagi

from . import numpy_backend as reference

NAME = "cupy"
xp = cupy

KERNELS = Path(tagi.__file__).resolve().parents[1] / "kernels"

USE_CUBLAS = False          # True: GEMM-shaped products through cuBLAS (cupy.matmul) on patch matrices
ELEMENT_THREADS = 256       # block size of the one-thread-per-element kernels
TARGET_BLOCKS_PER_SM = 2    # split the reduction of a GEMM until about this many blocks per SM run
MIN_SLICES_PER_SPLIT = 4    # ... but give every split at least this many GEMM_BK-slices of k
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _gemm_sizes():
    """GEMM_BM, GEMM_BN, GEMM_BK, GEMM_THREADS, GEMM_REDUCE_OUTPUTS of kernels/tagi_gemm.cuh."""
    text = (KERNELS / "tagi_gemm.cuh").read_text()
    size = {name: int(value) for name, value in re.findall(r"\b(GEMM_[A-Z_]+) = (\d+)", text)}
    threads = (size["GEMM_BM"] // size["GEMM_TM"]) * (size["GEMM_BN"] // size["GEMM_TN"])
    return size["GEMM_BM"], size["GEMM_BN"], size["GEMM_BK"], threads, size["GEMM_REDUCE_OUTPUTS"]


GEMM_BM, GEMM_BN, GEMM_BK, GEMM_THREADS, GEMM_REDUCE_OUTPUTS = _gemm_sizes()


# ----------------------------------------------------------------------------- transfers

def asarray(x, dtype=None):
    """Host (or device) array -> device array; no copy when it already is one of that dtype."""
    return cupy.asarray(x, dtype=dtype)


def to_numpy(x):
    """Device array -> host numpy array (waits for the work that produces it)."""
    return cupy.asnumpy(x)


def synchronize():
    """Wait until every queued kernel has finished."""
    cupy.cuda.Device().synchronize()


# ----------------------------------------------------------------------------- kernels and launches

def kernel_source(dtype):
    """The kernel files as one CUDA translation unit for ``dtype``, headers first.

    The headers' text is part of the source (their include guards make the
    ``#include`` lines no-ops), so CuPy's cache key changes whenever any file does.
    """
    lines = ["#define TAGI_DOUBLE"] if np.dtype(dtype) == np.float64 else []
    for path in sorted(KERNELS.glob("*.cuh")) + sorted(KERNELS.glob("*.cu")):
        lines += [f'#line 1 "{path.name}"', path.read_text()]
    return "\n".join(lines)


KERNEL_OPTIONS = ("-std=c++17", f"-I{KERNELS}")


@functools.cache
def _module(dtype):
    return cupy.RawModule(code=kernel_source(dtype), options=KERNEL_OPTIONS)


@functools.cache
def _kernel(name, dtype):
    return _module(dtype).get_function(f"{name}_{_SUFFIX[dtype]}")


@functools.cache
def _multiprocessors():
    return cupy.cuda.Device().attributes["MultiProcessorCount"]


def _real(x):
    """The floating dtype an op computes in: that of its first array."""
    dtype = np.dtype(x.dtype)
    if dtype not in _SUFFIX:
        raise TypeError(f"the cupy backend computes in float32 or float64, got {dtype}")
    return dtype


def _contiguous(dtype, *arrays):
    """Each array as a C-contiguous array of ``dtype`` (no copy when it is one already); None stays."""
    return [None if a is None else cupy.ascontiguousarray(a, dtype=dtype) for a in arrays]


def _ints(*values):
    return tuple(np.int32(v) for v in values)


def _window(g):
    """Window arguments of the conv and pooling kernels (struct Window in tagi_common.cuh)."""
    return _ints(g.channels, g.height, g.width, g.kernel, g.stride, g.pad_begin,
                 g.out_height, g.out_width)


def _elementwise(name, dtype, n, *args):
    """Launch a one-thread-per-element kernel ``name(int n, args...)``."""
    if n:
        _kernel(name, dtype)(((n + ELEMENT_THREADS - 1) // ELEMENT_THREADS,), (ELEMENT_THREADS,),
                             (np.int32(n), *args))


def _per_cell(name, dtype, n, *args):
    """Launch a kernel with one thread per output cell (n cells; the kernel derives n from args)."""
    if n:
        _kernel(name, dtype)(((n + ELEMENT_THREADS - 1) // ELEMENT_THREADS,), (ELEMENT_THREADS,), args)


def gemm_splits(m, n, k):
    """(k_chunk, splits): reduction length per block and number of blocks sharing an output tile."""
    tiles = -(-m // GEMM_BM) * -(-n // GEMM_BN)
    slices = -(-k // GEMM_BK)
    want = -(-TARGET_BLOCKS_PER_SM * _multiprocessors() // tiles)
    splits = max(1, min(want, slices // MIN_SLICES_PER_SPLIT))
    chunk = -(-slices // splits) * GEMM_BK
    return chunk, -(-k // chunk) if k else 1


def _gemm(name, dtype, m, n, k, args):
    """Launch the Gaussian-GEMM kernel ``name(args..., k_chunk, partial, reduce_splits)`` over an
    (m, n) output reduced over k (kernels/tagi_gemm.cuh); a split reduction takes a second pass."""
    if m == 0 or n == 0:
        return
    chunk, splits = gemm_splits(m, n, k)
    kernel, grid = _kernel(name, dtype), (-(-m // GEMM_BM), -(-n // GEMM_BN), splits)
    if splits == 1:
        kernel(grid, (GEMM_THREADS,), (*args, np.int32(chunk), None, np.int32(0)))
        return
    partial = cupy.empty((splits, 2, m, n), dtype=dtype)
    kernel(grid, (GEMM_THREADS,), (*args, np.int32(chunk), partial, np.int32(0)))
    kernel((-(-m * n // GEMM_REDUCE_OUTPUTS),), (GEMM_THREADS,),
           (*args, np.int32(chunk), partial, np.int32(splits)))


# ----------------------------------------------------------------------------- linear (§3.2, §5.2, §6.1)

def linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b):
    """(B, N_in) inputs, (N_out, N_in) weights, (N_out,) biases -> mu_z, var_z (B, N_out)."""
    if USE_CUBLAS:
        return reference.linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b)
    dtype = _real(mu_a)
    mu_a, var_a, mu_w, var_w, mu_b, var_b = _contiguous(dtype, mu_a, var_a, mu_w, var_w, mu_b, var_b)
    (batch, n_in), n_out = mu_a.shape, mu_w.shape[0]
    mu_z = cupy.empty((batch, n_out), dtype=dtype)
    var_z = None if var_w is None else cupy.empty_like(mu_z)
    _gemm("linear_forward", dtype, batch, n_out, n_in,
          (mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, *_ints(batch, n_in, n_out)))
    return mu_z, var_z


def linear_backward(delta_mu, delta_var, mu_w):
    """Output innovations (B, N_out) -> input innovations (B, N_in), with the prior mu_w."""
    if USE_CUBLAS:
        return reference.linear_backward(delta_mu, delta_var, mu_w)
    dtype = _real(delta_mu)
    delta_mu, delta_var, mu_w = _contiguous(dtype, delta_mu, delta_var, mu_w)
    batch, (n_out, n_in) = delta_mu.shape[0], mu_w.shape
    d_mu = cupy.empty((batch, n_in), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _gemm("linear_backward", dtype, batch, n_in, n_out,
          (delta_mu, delta_var, mu_w, d_mu, d_var, *_ints(batch, n_in, n_out)))
    return d_mu, d_var


def linear_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b):
    """Parameter deltas summed over the batch: dmu_w, dvar_w (N_out, N_in); dmu_b, dvar_b (N_out,)."""
    if USE_CUBLAS:
        return reference.linear_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b)
    dtype = _real(mu_a)
    mu_a, delta_mu, delta_var, var_w, var_b = _contiguous(dtype, mu_a, delta_mu, delta_var, var_w, var_b)
    (batch, n_in), n_out = mu_a.shape, delta_mu.shape[1]
    deltas = _empty_deltas(dtype, (n_out, n_in), n_out, delta_var is not None)
    _gemm("linear_param_deltas", dtype, n_in + 1, n_out, batch,
          (mu_a, delta_mu, delta_var, var_w, var_b, *deltas, *_ints(batch, n_in, n_out)))
    return deltas


def _empty_deltas(dtype, weight_shape, n_out, with_var):
    """Uninitialised dmu_w, dvar_w, dmu_b, dvar_b (the variance ones None when not computed)."""
    dmu_w, dmu_b = cupy.empty(weight_shape, dtype=dtype), cupy.empty(n_out, dtype=dtype)
    if not with_var:
        return dmu_w, None, dmu_b, None
    return dmu_w, cupy.empty_like(dmu_w), dmu_b, cupy.empty_like(dmu_b)


# ----------------------------------------------------------------------------- conv2d (§3.3, §5.3, §6.1)

def conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g):
    """(B, C, H, W) inputs, (Co, C, K, K) weights, (Co,) biases -> mu_z, var_z (B, Co, Ho, Wo)."""
    dtype = _real(mu_a)
    mu_a, var_a, mu_w, var_w, mu_b, var_b = _contiguous(dtype, mu_a, var_a, mu_w, var_w, mu_b, var_b)
    batch, c_out = mu_a.shape[0], mu_w.shape[0]
    if USE_CUBLAS:
        return _conv2d_forward_cublas(mu_a, var_a, mu_w, var_w, mu_b, var_b, g)
    mu_z = cupy.empty((batch, c_out, g.out_height, g.out_width), dtype=dtype)
    var_z = None if var_w is None else cupy.empty_like(mu_z)
    _gemm("conv2d_forward", dtype, batch * g.out_height * g.out_width, c_out, g.patch_size,
          (mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, np.int32(batch), *_window(g),
           np.int32(c_out)))
    return mu_z, var_z


def conv2d_backward(delta_mu, delta_var, mu_w, g):
    """Output innovations (B, Co, Ho, Wo) -> input innovations (B, C, H, W): transposed correlation."""
    dtype = _real(delta_mu)
    delta_mu, delta_var, mu_w = _contiguous(dtype, delta_mu, delta_var, mu_w)
    batch, c_out = delta_mu.shape[:2]
    if USE_CUBLAS:
        return _conv2d_backward_cublas(delta_mu, delta_var, mu_w, g)
    d_mu = cupy.empty((batch, g.channels, g.height, g.width), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _gemm("conv2d_backward", dtype, batch * g.height * g.width, g.channels,
          c_out * g.kernel * g.kernel,
          (delta_mu, delta_var, mu_w, d_mu, d_var, np.int32(batch), *_window(g), np.int32(c_out)))
    return d_mu, d_var


def conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    """Deltas summed over batch and positions: dmu_w, dvar_w (Co, C, K, K); dmu_b, dvar_b (Co,)."""
    dtype = _real(mu_a)
    mu_a, delta_mu, delta_var, var_w, var_b = _contiguous(dtype, mu_a, delta_mu, delta_var, var_w, var_b)
    batch, c_out = delta_mu.shape[:2]
    if USE_CUBLAS:
        return _conv2d_param_deltas_cublas(mu_a, delta_mu, delta_var, var_w, var_b, g)
    deltas = _empty_deltas(dtype, (c_out, g.channels, g.kernel, g.kernel), c_out,
                           delta_var is not None)
    _gemm("conv2d_param_deltas", dtype, g.patch_size + 1, c_out,
          batch * g.out_height * g.out_width,
          (mu_a, delta_mu, delta_var, var_w, var_b, *deltas, np.int32(batch), *_window(g),
           np.int32(c_out)))
    return deltas


def _im2col(mu_a, var_a, g, variance_rows):
    """Patch matrices (B, P, L) of mu_a and, with ``variance_rows``, the stacked variance operands
    (B, 2P, L) = [var_a; mu_a^2] patches, or (B, P, L) = mu_a^2 patches when var_a is None."""
    batch, patch, positions = mu_a.shape[0], g.patch_size, g.out_height * g.out_width
    cols_mu = cupy.empty((batch, patch, positions), dtype=mu_a.dtype)
    cols_var = None
    if variance_rows:
        rows = patch if var_a is None else 2 * patch
        cols_var = cupy.empty((batch, rows, positions), dtype=mu_a.dtype)
    _per_cell("im2col", mu_a.dtype, cols_mu.size, mu_a, var_a, cols_mu, cols_var, np.int32(batch),
          *_window(g))
    return cols_mu, cols_var


def _conv2d_forward_cublas(mu_a, var_a, mu_w, var_w, mu_b, var_b, g):
    batch, c_out = mu_a.shape[0], mu_w.shape[0]
    shape = (batch, c_out, g.out_height, g.out_width)
    cols_mu, cols_var = _im2col(mu_a, var_a, g, variance_rows=var_w is not None)
    w_mu = mu_w.reshape(c_out, -1)
    mu_z = (cupy.matmul(w_mu, cols_mu) + mu_b[:, None]).reshape(shape)
    if var_w is None:
        return mu_z, None
    w_var = var_w.reshape(c_out, -1)
    if var_a is not None:
        w_var = cupy.concatenate((w_mu * w_mu + w_var, w_var), axis=1)
    return mu_z, (cupy.matmul(w_var, cols_var) + var_b[:, None]).reshape(shape)


def _conv2d_backward_cublas(delta_mu, delta_var, mu_w, g):
    batch, c_out = delta_mu.shape[:2]
    w_mu = mu_w.reshape(c_out, -1)
    cols_mu = cupy.matmul(w_mu.T, delta_mu.reshape(batch, c_out, -1))          # (B, P, L)
    cols_var = None
    if delta_var is not None:
        cols_var = cupy.matmul((w_mu * w_mu).T, delta_var.reshape(batch, c_out, -1))
    d_mu = cupy.empty((batch, g.channels, g.height, g.width), dtype=delta_mu.dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _per_cell("col2im", delta_mu.dtype, d_mu.size, cols_mu, cols_var, d_mu, d_var, np.int32(batch),
          *_window(g))
    return d_mu, d_var


def _conv2d_param_deltas_cublas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    batch, c_out = delta_mu.shape[:2]
    w_shape = (c_out, g.channels, g.kernel, g.kernel)
    cols_mu, cols_sq = _im2col(mu_a, None, g, variance_rows=delta_var is not None)
    d_mu = delta_mu.reshape(batch, c_out, -1)                                # (B, Co, L)
    sums = [cupy.tensordot(d_mu, cols_mu, axes=((0, 2), (0, 2))).reshape(w_shape), None,
            d_mu.sum(axis=(0, 2)), None]
    if delta_var is not None:
        d_var = delta_var.reshape(batch, c_out, -1)
        sums[1] = cupy.tensordot(d_var, cols_sq, axes=((0, 2), (0, 2))).reshape(w_shape)
        sums[3] = d_var.sum(axis=(0, 2))
    return reference._scale_sums(sums, var_w, var_b)


# ----------------------------------------------------------------------------- average pooling (§3.4, §5.4)

def avgpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> (B, C, Ho, Wo): window sums over K**2 (mean) and K**4 (variance)."""
    dtype = _real(mu_a)
    mu_a, var_a = _contiguous(dtype, mu_a, var_a)
    batch = mu_a.shape[0]
    mu = cupy.empty((batch, g.channels, g.out_height, g.out_width), dtype=dtype)
    var = None if var_a is None else cupy.empty_like(mu)
    _per_cell("avgpool2d_forward", dtype, mu.size, mu_a, var_a, mu, var, np.int32(batch), *_window(g))
    return mu, var


def avgpool2d_backward(delta_mu, delta_var, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W)."""
    dtype = _real(delta_mu)
    delta_mu, delta_var = _contiguous(dtype, delta_mu, delta_var)
    batch = delta_mu.shape[0]
    d_mu = cupy.empty((batch, g.channels, g.height, g.width), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _per_cell("avgpool2d_backward", dtype, d_mu.size, delta_mu, delta_var, d_mu, d_var,
          np.int32(batch), *_window(g))
    return d_mu, d_var


# ----------------------------------------------------------------------------- activations (§3.5)

def relu_forward(mu_z, var_z):
    """Linearised ReLU: mu_a, var_a and the Jacobian J (1 where mu_z > 0, else 0), all like mu_z."""
    dtype = _real(mu_z)
    mu_z, var_z = _contiguous(dtype, mu_z, var_z)
    mu_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    var_a = None if var_z is None else cupy.empty_like(mu_z)
    _elementwise("relu_forward", dtype, mu_z.size, mu_z, var_z, mu_a, var_a, jac)
    return mu_a, var_a, jac


def mixture_relu_forward(mu_z, var_z):
    """Exact moments of max(0, Z), Z ~ N(mu_z, var_z): mu_a, var_a, J = Phi(mu_z / sd_z)."""
    dtype = _real(mu_z)
    mu_z, var_z = _contiguous(dtype, mu_z, var_z)
    mu_a, var_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    _elementwise("mixture_relu_forward", dtype, mu_z.size, mu_z, var_z, mu_a, var_a, jac)
    return mu_a, var_a, jac


def scale_by_jacobian(delta_mu, delta_var, jac):
    """Innovations of an activation's output -> of its input: J * delta_mu, J**2 * delta_var."""
    dtype = _real(delta_mu)
    delta_mu, delta_var, jac = _contiguous(dtype, delta_mu, delta_var, jac)
    d_mu = cupy.empty_like(delta_mu)
    d_var = None if delta_var is None else cupy.empty_like(delta_mu)
    _elementwise("scale_by_jacobian", dtype, delta_mu.size, delta_mu, delta_var, jac, d_mu, d_var)
    return d_mu, d_var


# ----------------------------------------------------------------------------- output update (§4) and step (§6.2)

def gaussian_innovations(mu, var, y, sigma_v):
    """Observation y = z + v, v ~ N(0, sigma_v**2), elementwise on (B, N) arrays.

    delta_mu = (y - mu) / S, delta_var = -1 / S with S = var + sigma_v**2; where y is NaN
    (unobserved) or S is not finite, both deltas are 0.
    """
    dtype = _real(mu)
    mu, var, y = _contiguous(dtype, mu, var, y)
    delta_mu, delta_var = cupy.empty_like(mu), cupy.empty_like(mu)
    _elementwise("gaussian_innovations", dtype, mu.size, mu, var, y, dtype.type(sigma_v),
                 delta_mu, delta_var)
    return delta_mu, delta_var


def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var) / cap_factor; floor variances at 1e-5."""
    dtype = _real(mu)
    flat_mu, flat_var, delta_mu, delta_var = _contiguous(dtype, mu, var, delta_mu, delta_var)
    _elementwise("capped_update", dtype, mu.size, flat_mu, flat_var, delta_mu, delta_var,
                 dtype.type(cap_factor))
    for param, flat in ((mu, flat_mu), (var, flat_var)):
        if flat is not param:            # a view (or another dtype): the kernel updated a copy
            param[...] = flat


def normal_cdf(x):
    """Standard normal CDF, elementwise."""
    dtype = _real(x)
    (x,) = _contiguous(dtype, x)
    out = cupy.empty_like(x)
    _elementwise("normal_cdf", dtype, x.size, x, out)
    return out


# ----------------------------------------------------------------------------- CUDA graphs

class CapturedGraph:
    """One call of a function recorded as a CUDA graph (made by ``capture``).

    ``replay()`` re-runs every kernel of that call with a single launch on the
    current stream, on the very same device arrays; ``outputs`` is what the call
    returned, refreshed in place by each replay.
    """

    def __init__(self, graph, pool, outputs):
        self._graph, self._pool, self.outputs = graph, pool, outputs

    def replay(self):
        self._graph.launch()


def capture(fn):
    """Record ``fn()`` as a CUDA graph -> ``CapturedGraph``; ``fn`` also runs once for real first.

    For a training step, ``fn`` runs the layer code unchanged, e.g.
    ``mu, var = net.forward(x); d = gaussian_innovations(mu, var, y, s); net.backward(*d); net.step()``,
    on device buffers ``x``, ``y`` that the caller refills (``x[...] = batch``) before
    each ``replay()``. Rules: ``fn`` must not copy from the host (such a copy would be
    frozen into the graph), must not synchronise, and must see the same shapes; the
    graph keeps the parameter arrays it updated, so ``load_state_dict`` needs a new
    capture. The first real call compiles the kernels and fills a memory pool that
    belongs to the graph alone, so its buffers are never handed to other work.
    Only the fused GEMM path can be recorded: CuPy refuses any cuBLAS call during
    stream capture (NotImplementedError), so with ``USE_CUBLAS`` only functions
    without a conv2d or linear op can.
    """
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.get_current_stream().synchronize()      # inputs written on the caller's stream
    with cupy.cuda.using_allocator(pool.malloc), stream:
        fn()
        stream.begin_capture()
        try:
            outputs = fn()
        finally:
            graph = stream.end_capture()
    stream.synchronize()
    return CapturedGraph(graph, pool, outputs)
