"""Numba CPU backend: the reference's ops, with BLAS GEMMs and parallel Numba kernels around them.

Same functions, signatures, ``None`` conventions and results (to float
round-off) as ``numpy_backend``, which documents every op. Arrays are numpy
arrays. How it is fast:

- a conv layer gathers its input windows into column matrices
  (``_numba_kernels.im2col``) a few samples at a time, so each chunk's columns
  are still in cache when its GEMM reads them and memory stays bounded at any
  batch size;
- a float32 GEMM with few weights per output (the first conv layer's 32 x 75) runs in column
  blocks small enough for OpenBLAS's unpacked small-matrix kernel (``_matmul``);
- the forward variance is one GEMM with a doubled inner dimension:
  ``var_z = [var_w | mu_w**2 + var_w] @ [mu_a**2 ; var_a] + var_b``;
- per chunk, one gather pass writes the window cells, their squares and the
  input variances' cells, and one scatter pass writes both moments back (each
  Numba call, and each thread wake-up, has a fixed cost); the bias add rides on the
  copy of the GEMM output into NCHW order; the ReLU writes its three outputs
  in one pass; pooling sums window rows before columns (long vector loops).

Ops with nothing to gain from Numba are the reference's own functions: the
transfers, the linear layer (three small GEMMs, run on one BLAS thread), the
output update and Phi.

Threads: a network runs each part of a batch (``batch_parts``: up to 8
contiguous parts of at least 4 samples, fixed by the batch size, never by the
thread count) through all its layers (``run_parts``, see
``tagi.nn.Sequential``), the parts shared out among the threads, with
single-threaded BLAS and Numba kernels, so a training step hands work between
threads twice. Called on its own (the BP trainer, the benchmark suite's
per-op table), a conv op splits its batch the same way
(``_numba_threads.split``), so it hands off once instead of at every chunk's
gather, GEMM and scatter; the parameter deltas add the parts' sums in part
order. Inside a part, an op's split runs whole. Results are therefore the
same at any thread count.

Numba's OpenMP workers spin after every kernel by default, on the
cores that BLAS's threads need for the next GEMM, so that on a few cores a
training step waits on them many times over. ``tune_process()`` therefore sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment already says otherwise (it
takes effect if Numba has not started its threads yet). Importing this module
changes nothing; choosing the backend calls ``tune_process()``:
``tagi.backends.get_backend("numba")`` (also through ``"auto"`` and
``Sequential(..., backend="numba")``), and ``tagi.threads.limit_threads``,
which starts Numba's threads.

Memory: a training step allocates and frees arrays of 0.1-4 MiB by the dozen.
glibc serves each of those with its own ``mmap`` and returns it at ``free``,
so every step faulted all its pages in afresh, in kernel time.
``tune_process()`` therefore asks glibc (``mallopt``) to serve every array
from the heap and to keep freed heap memory for the next step, unless the
environment holds a ``MALLOC_*`` setting of glibc's own; the process keeps its
peak memory rather than returning it between steps.
"""
import ctypes
import functools
import os

import numpy as np

from . import _numba_kernels as kernels
from . import _numba_threads as threads
from . import numpy_backend as reference
from .numpy_backend import scale_param_sums
# ops with nothing to gain from Numba: the reference's own functions
from .numpy_backend import (asarray, gaussian_innovations, mixture_relu_forward,  # noqa: F401
                            normal_cdf, synchronize, to_numpy)

def _keep_heap_memory():
    """glibc only (elsewhere nothing): every array comes from the heap, and freed heap memory is
    kept (up to 256 MiB free at its top) rather than returned to the system at once."""
    if any(name.startswith("MALLOC_") for name in os.environ):   # the user's own glibc tuning
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-4, 0)           # M_MMAP_MAX: no allocation gets its own mmap
        mallopt(-1, 256 << 20)   # M_TRIM_THRESHOLD


@functools.cache
def tune_process():
    """Tune this process for the backend, once (later calls do nothing): Numba's OpenMP workers
    sleep between kernels (``OMP_WAIT_POLICY=PASSIVE`` unless already set; call this before
    Numba starts its threads) and glibc keeps freed heap memory (``_keep_heap_memory``)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _keep_heap_memory()

# a network runs each part of a batch, layer after layer, on one of the threads (tagi.nn.Sequential)
batch_parts, run_parts = threads.batch_parts, threads.run

# the linear layer: the reference's three small GEMMs, on one BLAS thread
linear_forward = threads.single_blas(reference.linear_forward)
linear_backward = threads.single_blas(reference.linear_backward)
linear_param_deltas = threads.single_blas(reference.linear_param_deltas)

NAME = "numba"
xp = np

# Elements of the column matrices of one chunk of samples (1 MiB in float32, one core's L2 here):
# small enough to stay in cache between the gather and its GEMM, and to bound memory at any batch
# size. The mean-only ops (BP) have the fewest rows, hence the most samples per chunk; with
# 4 MiB chunks their GEMMs ran slower.
CHUNK_FLOATS = 1 << 18


# OpenBLAS runs a float32 product of at most this many multiply-adds (M*N*K) in its small-matrix
# kernel, without packing; the first conv layer's forward (32 x 75 weights) gains from blocks of
# that size (float64 blocks ran slower). The benchmark suite's per-op table
# (``python -m benchmarks``) times that op.
SMALL_GEMM = 1_000_000
# ... where blocks of at least this many columns fit (narrower blocks ran no faster than one GEMM)
MIN_BLOCK_COLUMNS = 128


def _matmul(a, b):
    """a (M, K) @ b (K, N): float32 in column blocks of b sized for BLAS's small-matrix kernel
    where blocks of at least MIN_BLOCK_COLUMNS fit, else one GEMM."""
    width = SMALL_GEMM // (a.shape[0] * a.shape[1])
    if a.dtype != np.float32 or width < MIN_BLOCK_COLUMNS or width >= b.shape[1]:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    for j in range(0, b.shape[1], width):
        np.matmul(a, b[:, j:j + width], out=out[:, j:j + width])
    return out


def _contiguous(x, shape=None):
    """x as a C-contiguous array (reshaped to ``shape`` if given); None stays None."""
    if x is None:
        return None
    x = np.ascontiguousarray(x)
    return x if shape is None else x.reshape(shape)


def _flat(x):
    return _contiguous(x, -1)


def _chunks(first, count, area, rows):
    """(b0, nb) pieces of samples first..first+count-1, for column matrices of ``rows`` rows and
    ``area`` columns per sample."""
    step = max(CHUNK_FLOATS // (rows * area), 1)
    end = first + count
    return [(b0, min(step, end - b0)) for b0 in range(first, end, step)]


# ----------------------------------------------------------------------------- conv2d (§3.3, §5.3, §6.1)

def conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g):
    """(B, C, H, W) inputs, (Co, C, K, K) weights, (Co,) biases -> mu_z, var_z (B, Co, Ho, Wo)."""
    batch, c_out, p = mu_a.shape[0], mu_w.shape[0], g.patch_size
    area, dtype = g.out_height * g.out_width, mu_a.dtype
    window = (g.kernel, g.stride, g.pad_begin, g.out_height, g.out_width)
    mu_a, var_a = _contiguous(mu_a), _contiguous(var_a)
    w_mu = mu_w.reshape(c_out, p)
    mu_z = np.empty((batch, c_out, area), dtype)
    shape = (batch, c_out, g.out_height, g.out_width)
    if var_w is None:
        def part(first, count):
            for b0, nb in _chunks(first, count, area, p):
                cols = np.empty((p, nb * area), dtype)
                kernels.im2col(mu_a, None, b0, *window, cols, None, None)
                kernels.cols_to_images(_matmul(w_mu, cols), None, mu_b, None, b0, mu_z, None)
        threads.split(batch, part)
        return mu_z.reshape(shape), None
    var_z = np.empty_like(mu_z)
    w_var = var_w.reshape(c_out, p)
    # variance columns [mu_a**2] for an exact input, else [mu_a**2 ; var_a]: one GEMM
    w_cat = w_var if var_a is None else np.concatenate([w_var, w_mu * w_mu + w_var], axis=1)

    def part(first, count):
        for b0, nb in _chunks(first, count, area, p + w_cat.shape[1]):
            cols = np.empty((p, nb * area), dtype)
            cols_var = np.empty((w_cat.shape[1], nb * area), dtype)
            kernels.im2col(mu_a, var_a, b0, *window, cols, cols_var[:p],
                           None if var_a is None else cols_var[p:])
            kernels.cols_to_images(_matmul(w_mu, cols), _matmul(w_cat, cols_var), mu_b, var_b, b0,
                                  mu_z, var_z)
    threads.split(batch, part)
    return mu_z.reshape(shape), var_z.reshape(shape)


def conv2d_backward(delta_mu, delta_var, mu_w, g):
    """Output innovations (B, Co, Ho, Wo) -> input innovations (B, C, H, W): transposed correlation."""
    batch, c_out = delta_mu.shape[:2]
    area, dtype = g.out_height * g.out_width, delta_mu.dtype
    window = (g.kernel, g.stride, g.pad_begin, g.out_height, g.out_width)
    w_t = np.ascontiguousarray(mu_w.reshape(c_out, -1).T)   # (C*K*K, Co): BLAS prefers a copy
    w_t_sq = None if delta_var is None else w_t * w_t
    delta_mu = _contiguous(delta_mu, (batch, c_out, area))
    delta_var = _contiguous(delta_var, (batch, c_out, area))
    d_mu = np.empty((batch, g.channels, g.height, g.width), dtype)
    d_var = None if delta_var is None else np.empty_like(d_mu)
    moments = 1 if delta_var is None else 2

    def part(first, count):
        for b0, nb in _chunks(first, count, area, moments * g.patch_size):
            d_cols = np.empty((c_out, nb * area), dtype)
            d_cols_var = None if delta_var is None else np.empty_like(d_cols)
            kernels.images_to_cols(delta_mu, delta_var, b0, d_cols, d_cols_var)
            cols_var = None if delta_var is None else w_t_sq @ d_cols_var
            kernels.col2im(w_t @ d_cols, cols_var, b0, *window, d_mu, d_var)
    threads.split(batch, part)
    return d_mu, d_var


def conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    """Deltas summed over batch and positions: dmu_w, dvar_w (Co, C, K, K); dmu_b, dvar_b (Co,)."""
    batch, c_out, p = delta_mu.shape[0], delta_mu.shape[1], g.patch_size
    area, dtype = g.out_height * g.out_width, delta_mu.dtype
    window = (g.kernel, g.stride, g.pad_begin, g.out_height, g.out_width)
    mu_a = np.ascontiguousarray(mu_a)
    delta_mu = _contiguous(delta_mu, (batch, c_out, area))
    delta_var = _contiguous(delta_var, (batch, c_out, area))
    has_var = delta_var is not None

    def part(first, count):
        """Sums over the part's (b, oy, ox) of window cells * delta_mu and of their squares *
        delta_var, kept as (C*K*K, Co): BLAS runs that orientation faster than its transpose."""
        sum_mu_w, sum_mu_b = np.zeros((p, c_out), dtype), np.zeros(c_out, dtype)
        sum_var_w, sum_var_b = ((np.zeros((p, c_out), dtype), np.zeros(c_out, dtype)) if has_var
                                else (None, None))
        cols_sq = d_cols_var = None
        for b0, nb in _chunks(first, count, area, (2 if has_var else 1) * p):
            cols, d_cols = np.empty((p, nb * area), dtype), np.empty((c_out, nb * area), dtype)
            if has_var:
                cols_sq, d_cols_var = np.empty_like(cols), np.empty_like(d_cols)
            kernels.im2col(mu_a, None, b0, *window, cols, cols_sq, None)
            kernels.images_to_cols(delta_mu, delta_var, b0, d_cols, d_cols_var)
            sum_mu_w += cols @ d_cols.T
            sum_mu_b += d_cols.sum(axis=1)
            if has_var:
                sum_var_w += cols_sq @ d_cols_var.T
                sum_var_b += d_cols_var.sum(axis=1)
        return sum_mu_w, sum_var_w, sum_mu_b, sum_var_b

    partial = threads.split(batch, part)
    sum_mu_w, sum_var_w, sum_mu_b, sum_var_b = (
        None if sums[0] is None else sum(sums[1:], sums[0]) for sums in zip(*partial))
    w_shape = (c_out, g.channels, g.kernel, g.kernel)
    sum_mu_w = np.ascontiguousarray(sum_mu_w.T).reshape(w_shape)
    sum_var_w = np.ascontiguousarray(sum_var_w.T).reshape(w_shape) if has_var else None
    return scale_param_sums([sum_mu_w, sum_var_w, sum_mu_b, sum_var_b], var_w, var_b)


# ----------------------------------------------------------------------------- average pooling (§3.4, §5.4)

def avgpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> (B, C, Ho, Wo): window sums over K**2 (mean) and K**4 (variance)."""
    k2 = g.kernel * g.kernel
    return _pooled(kernels.pool_sum, (mu_a, var_a), (k2, k2 * k2), (g.out_height, g.out_width), g)


def avgpool2d_backward(delta_mu, delta_var, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W)."""
    k2 = g.kernel * g.kernel
    return _pooled(kernels.pool_spread, (delta_mu, delta_var), (1.0 / k2, 1.0 / (k2 * k2)),
                   (g.height, g.width), g)


def _pooled(kernel, inputs, factors, out_hw, g):
    """``kernel(x, K, S, pad, factor, out)`` for each (B, C, ...) input and its factor, on one part
    of the batch per thread (one hand-off for both moments) -> outputs (B, C, *out_hw); a None
    input gives None."""
    inputs = [_contiguous(x) for x in inputs]
    outs = [None if x is None else np.empty((x.shape[0], g.channels, *out_hw), x.dtype)
            for x in inputs]
    factors = [inputs[0].dtype.type(f) for f in factors]

    def part(first, count):
        for x, factor, out in zip(inputs, factors, outs):
            if x is not None:
                kernel(x[first:first + count], g.kernel, g.stride, g.pad_begin, factor,
                       out[first:first + count])
    threads.split(inputs[0].shape[0], part)
    return tuple(outs)


# ----------------------------------------------------------------------------- activations (§3.5)

def relu_forward(mu_z, var_z):
    """Linearised ReLU: mu_a, var_a and the Jacobian J (1 where mu_z > 0, else 0), all like mu_z."""
    mu_z, var_z = np.ascontiguousarray(mu_z), _contiguous(var_z)
    mu_a, jac = np.empty_like(mu_z), np.empty_like(mu_z)
    var_a = None if var_z is None else np.empty_like(mu_z)
    kernels.relu(*map(_flat, (mu_z, var_z, mu_a, var_a, jac)))
    return mu_a, var_a, jac


def scale_by_jacobian(delta_mu, delta_var, jac):
    """Innovations of an activation's output -> of its input: J * delta_mu, J**2 * delta_var."""
    delta_mu, delta_var = np.ascontiguousarray(delta_mu), _contiguous(delta_var)
    out_mu = np.empty_like(delta_mu)
    out_var = None if delta_var is None else np.empty_like(delta_mu)
    kernels.scale_by_jacobian(*map(_flat, (delta_mu, delta_var, jac, out_mu, out_var)))
    return out_mu, out_var


# ----------------------------------------------------------------------------- step (§6.2)

def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var) / cap_factor; floor variances at 1e-5."""
    if not (mu.flags.c_contiguous and var.flags.c_contiguous):   # no flat view to write through
        reference.capped_update(mu, var, delta_mu, delta_var, cap_factor)
        return
    kernels.capped_update(mu.reshape(-1), var.reshape(-1), _flat(delta_mu), _flat(delta_var),
                          var.dtype.type(cap_factor))


# ----------------------------------------------------------------------------- max pooling (§3.4.1, §5.4.1)

def maxpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> mu, var (B, C, Ho, Wo): each window's cell of largest mean; index int32."""
    mu_a, var_a = _contiguous(mu_a), _contiguous(var_a)
    shape = (mu_a.shape[0], g.channels, g.out_height, g.out_width)
    mu, index = np.empty(shape, mu_a.dtype), np.empty(shape, np.int32)
    var = None if var_a is None else np.empty_like(mu)
    kernels.maxpool_forward(mu_a, var_a, g.kernel, g.stride, g.pad_begin, mu, var, index)
    return mu, var, index


def maxpool2d_backward(delta_mu, delta_var, index, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W), routed to ``index``."""
    index = _contiguous(index)
    outs = []
    for delta in (delta_mu, delta_var):
        if delta is None:
            outs.append(None)
            continue
        outs.append(np.empty((delta.shape[0], g.channels, g.height, g.width), delta.dtype))
        kernels.maxpool_route(_contiguous(delta), index, g.kernel, g.stride, g.pad_begin, outs[-1])
    return tuple(outs)


# ----------------------------------------------------------------------------- leaky ReLU (§3.5)

mixture_leaky_relu_forward = reference.mixture_leaky_relu_forward   # nothing to gain from Numba


def leaky_relu_forward(mu_z, var_z, negative_slope):
    """Linearised leaky ReLU: mu_a, var_a and J (1 where mu_z > 0, else negative_slope)."""
    mu_z, var_z = np.ascontiguousarray(mu_z), _contiguous(var_z)
    mu_a, jac = np.empty_like(mu_z), np.empty_like(mu_z)
    var_a = None if var_z is None else np.empty_like(mu_z)
    kernels.leaky_relu(_flat(mu_z), _flat(var_z), mu_z.dtype.type(negative_slope),
                       *map(_flat, (mu_a, var_a, jac)))
    return mu_a, var_a, jac
