"""CuPy backend: the TAGI ops as raw CUDA kernels (``kernels/*.cu``) on cupy arrays.

Same op names, signatures and ``None`` conventions as the NumPy reference
(``numpy_backend.py``), on cupy arrays. Every op only queues kernels on the
current stream and returns: no op synchronises with the host or copies between
host and device. ``asarray`` (host -> device), ``to_numpy`` (device -> host)
and ``synchronize`` are the only crossings.

Kernels. ``cupy_kernels`` finds the CUDA sources and compiles them, one
translation unit per floating type; this module launches them.

GEMM-shaped products (conv2d and linear: forward moments, input innovations,
parameter deltas) run by default as fused Gaussian-GEMM kernels
(``kernels/tagi_gemm.cuh``): one launch computes means and variances together,
gathering its operands straight from the NCHW maps; when the output has too few
tiles to fill the GPU (batch 16, parameter deltas) the reduction is split over
more blocks (at most the device's grid z limit) and a second launch adds the
parts in a fixed order. Inside ``with gemm_settings(cublas=True):`` they run as
the reference's formulas instead: patch matrices (im2col / col2im kernels)
multiplied by cuBLAS through ``cupy.matmul``. Both paths agree to round-off;
the ``gpu`` suite of ``python -m benchmarks`` times both.

Arrays. Every op takes device arrays; a host numpy array is refused with a
TypeError naming the op and the argument (``asarray`` copies it to the device).

``capture(fn)`` (``cupy_graph``) records a function of device arrays (a whole
training step, ``tagi.loop.TrainStep``) as a CUDA graph and replays it with one
launch, see ``cupy_graph.CapturedGraph``; where capture fails, the replay runs ``fn``
eagerly instead.

This module imports no layer code (``tagi.nn``, ``tagi.bp``).
"""
import contextlib
import contextvars
import dataclasses
import functools

import cupy
import numpy as np

from . import DTYPES
from . import numpy_backend as reference
from .cupy_graph import capture  # noqa: F401  (the backend's CUDA graphs)
from .cupy_kernels import GEMM_BK, GEMM_BM, GEMM_BN, GEMM_REDUCE_OUTPUTS, GEMM_THREADS, SUFFIX, kernel
from .numpy_backend import batch_parts, run_parts  # noqa: F401  (a GPU runs the whole batch at once)

NAME = "cupy"
xp = cupy


def _require_device():
    """ImportError (so get_backend reports the backend as unavailable) without a usable GPU."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:   # no driver, or one too old
        raise ImportError(f"cupy finds no usable CUDA device ({err})") from None
    if count == 0:
        raise ImportError("cupy finds no CUDA device")


_require_device()

ELEMENT_THREADS = 256       # block size of the one-thread-per-element kernels


@dataclasses.dataclass(frozen=True)
class GemmSettings:
    """How the conv2d and linear ops compute their products (see ``gemm_settings``).

    ``cublas``: patch matrices through cuBLAS instead of the fused kernels.
    ``blocks_per_sm``: split a reduction until about this many blocks per SM run (0: never split).
    ``min_slices_per_split``: ... but give every split at least this many GEMM_BK slices of k.
    """

    cublas: bool = False
    blocks_per_sm: int = 2
    min_slices_per_split: int = 4

    def __post_init__(self):
        if not isinstance(self.blocks_per_sm, int) or self.blocks_per_sm < 0:
            raise ValueError(f"blocks_per_sm must be an int >= 0, got {self.blocks_per_sm!r}")
        if not isinstance(self.min_slices_per_split, int) or self.min_slices_per_split < 1:
            raise ValueError(f"min_slices_per_split must be an int >= 1, got {self.min_slices_per_split!r}")


_GEMM_SETTINGS = contextvars.ContextVar("gemm_settings", default=GemmSettings())


@contextlib.contextmanager
def gemm_settings(**changes):
    """Within the block, the GEMM-shaped ops use the current settings with ``changes`` applied,
    e.g. ``with gemm_settings(cublas=True):``; yields the GemmSettings in force."""
    token = _GEMM_SETTINGS.set(dataclasses.replace(_GEMM_SETTINGS.get(), **changes))
    try:
        yield _GEMM_SETTINGS.get()
    finally:
        _GEMM_SETTINGS.reset(token)


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


# ----------------------------------------------------------------------------- launches

@functools.cache
def _device_attribute(name):
    """An attribute of the current device, e.g. MultiProcessorCount, MaxGridDimZ."""
    return cupy.cuda.Device().attributes[name]


def _operands(op, **arrays):
    """(dtype, [arrays]): the floating dtype of the first array, and each array as a C-contiguous
    device array of it (no copy when it is one already); None stays None.

    Raises TypeError, naming ``op`` and the argument, for a host (numpy) array or another
    non-device value, and for a first array that is not float32 or float64.
    """
    _check_on_device(op, arrays)
    dtype = np.dtype(next(iter(arrays.values())).dtype)
    if dtype not in SUFFIX:
        raise TypeError(f"cupy backend {op}: computes in {' or '.join(DTYPES)}, got {dtype}")
    return dtype, [None if a is None else cupy.ascontiguousarray(a, dtype=dtype)
                   for a in arrays.values()]


def _check_on_device(op, arrays):
    """TypeError, naming ``op`` and the argument, for any of ``arrays`` ({name: value}) that is
    not None and not a device array."""
    for name, a in arrays.items():
        if a is not None and not isinstance(a, cupy.ndarray):
            what = "a host numpy array" if isinstance(a, np.ndarray) else f"a {type(a).__name__}"
            raise TypeError(f"cupy backend {op}: {name} is {what}; use backend.asarray({name}) "
                            "to copy it to the GPU first")


def _ints(*values):
    return tuple(np.int32(v) for v in values)


def _window(g):
    """Window arguments of the conv and pooling kernels (struct Window in tagi_common.cuh)."""
    return _ints(g.channels, g.height, g.width, g.kernel, g.stride, g.pad_begin,
                 g.out_height, g.out_width)


def _elementwise(name, dtype, n, *args):
    """Launch kernel ``name(args...)`` with one thread per element, n elements (cells)."""
    if n:
        kernel(name, dtype)(((n + ELEMENT_THREADS - 1) // ELEMENT_THREADS,), (ELEMENT_THREADS,), args)


def gemm_splits(m, n, k):
    """(k_chunk, splits): reduction length per block and number of blocks sharing an output tile
    of an (m, n) output reduced over k, under the current ``gemm_settings``; splits is at most
    the device's grid z limit (MaxGridDimZ, 65,535 on every CUDA GPU so far)."""
    settings = _GEMM_SETTINGS.get()
    tiles = -(-m // GEMM_BM) * -(-n // GEMM_BN)
    slices = -(-k // GEMM_BK)
    want = -(-settings.blocks_per_sm * _device_attribute("MultiProcessorCount") // max(tiles, 1))
    splits = max(1, min(want, slices // settings.min_slices_per_split,
                        _device_attribute("MaxGridDimZ")))
    chunk = -(-slices // splits) * GEMM_BK
    return chunk, -(-k // chunk) if k else 1


def _gemm(name, dtype, m, n, k, args):
    """Launch the Gaussian-GEMM kernel ``name(args..., k_chunk, partial, reduce_splits)`` over an
    (m, n) output reduced over k (kernels/tagi_gemm.cuh); a split reduction takes a second pass."""
    if m == 0 or n == 0:
        return
    chunk, splits = gemm_splits(m, n, k)
    launch, grid = kernel(name, dtype), (-(-m // GEMM_BM), -(-n // GEMM_BN), splits)
    if splits == 1:
        launch(grid, (GEMM_THREADS,), (*args, np.int32(chunk), None, np.int32(0)))
        return
    partial = cupy.empty((splits, 2, m, n), dtype=dtype)
    launch(grid, (GEMM_THREADS,), (*args, np.int32(chunk), partial, np.int32(0)))
    launch((-(-m * n // GEMM_REDUCE_OUTPUTS),), (GEMM_THREADS,),
           (*args, np.int32(chunk), partial, np.int32(splits)))


# ----------------------------------------------------------------------------- linear (§3.2, §5.2, §6.1)

def linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b):
    """(B, N_in) inputs, (N_out, N_in) weights, (N_out,) biases -> mu_z, var_z (B, N_out)."""
    dtype, (mu_a, var_a, mu_w, var_w, mu_b, var_b) = _operands(
        "linear_forward", mu_a=mu_a, var_a=var_a, mu_w=mu_w, var_w=var_w, mu_b=mu_b, var_b=var_b)
    if _GEMM_SETTINGS.get().cublas:
        return reference.linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b)
    (batch, n_in), n_out = mu_a.shape, mu_w.shape[0]
    mu_z = cupy.empty((batch, n_out), dtype=dtype)
    var_z = None if var_w is None else cupy.empty_like(mu_z)
    _gemm("linear_forward", dtype, batch, n_out, n_in,
          (mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, *_ints(batch, n_in, n_out)))
    return mu_z, var_z


def linear_backward(delta_mu, delta_var, mu_w):
    """Output innovations (B, N_out) -> input innovations (B, N_in), with the prior mu_w."""
    dtype, (delta_mu, delta_var, mu_w) = _operands(
        "linear_backward", delta_mu=delta_mu, delta_var=delta_var, mu_w=mu_w)
    if _GEMM_SETTINGS.get().cublas:
        return reference.linear_backward(delta_mu, delta_var, mu_w)
    batch, (n_out, n_in) = delta_mu.shape[0], mu_w.shape
    d_mu = cupy.empty((batch, n_in), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _gemm("linear_backward", dtype, batch, n_in, n_out,
          (delta_mu, delta_var, mu_w, d_mu, d_var, *_ints(batch, n_in, n_out)))
    return d_mu, d_var


def linear_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b):
    """Parameter deltas summed over the batch: dmu_w, dvar_w (N_out, N_in); dmu_b, dvar_b (N_out,)."""
    dtype, (mu_a, delta_mu, delta_var, var_w, var_b) = _operands(
        "linear_param_deltas", mu_a=mu_a, delta_mu=delta_mu, delta_var=delta_var, var_w=var_w,
        var_b=var_b)
    if _GEMM_SETTINGS.get().cublas:
        return reference.linear_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b)
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
    dtype, (mu_a, var_a, mu_w, var_w, mu_b, var_b) = _operands(
        "conv2d_forward", mu_a=mu_a, var_a=var_a, mu_w=mu_w, var_w=var_w, mu_b=mu_b, var_b=var_b)
    batch, c_out = mu_a.shape[0], mu_w.shape[0]
    if _GEMM_SETTINGS.get().cublas:
        return _conv2d_forward_cublas(mu_a, var_a, mu_w, var_w, mu_b, var_b, g)
    mu_z = cupy.empty((batch, c_out, g.out_height, g.out_width), dtype=dtype)
    var_z = None if var_w is None else cupy.empty_like(mu_z)
    _gemm("conv2d_forward", dtype, batch * g.out_height * g.out_width, c_out, g.patch_size,
          (mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, np.int32(batch), *_window(g),
           np.int32(c_out)))
    return mu_z, var_z


def conv2d_backward(delta_mu, delta_var, mu_w, g):
    """Output innovations (B, Co, Ho, Wo) -> input innovations (B, C, H, W): transposed correlation."""
    dtype, (delta_mu, delta_var, mu_w) = _operands(
        "conv2d_backward", delta_mu=delta_mu, delta_var=delta_var, mu_w=mu_w)
    batch, c_out = delta_mu.shape[:2]
    if _GEMM_SETTINGS.get().cublas:
        return _conv2d_backward_cublas(delta_mu, delta_var, mu_w, g)
    d_mu = cupy.empty((batch, g.channels, g.height, g.width), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _gemm("conv2d_backward", dtype, batch * g.height * g.width, g.channels,
          c_out * g.kernel * g.kernel,
          (delta_mu, delta_var, mu_w, d_mu, d_var, np.int32(batch), *_window(g), np.int32(c_out)))
    return d_mu, d_var


def conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    """Deltas summed over batch and positions: dmu_w, dvar_w (Co, C, K, K); dmu_b, dvar_b (Co,)."""
    dtype, (mu_a, delta_mu, delta_var, var_w, var_b) = _operands(
        "conv2d_param_deltas", mu_a=mu_a, delta_mu=delta_mu, delta_var=delta_var, var_w=var_w,
        var_b=var_b)
    batch, c_out = delta_mu.shape[:2]
    if _GEMM_SETTINGS.get().cublas:
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
    _elementwise("im2col", mu_a.dtype, cols_mu.size, mu_a, var_a, cols_mu, cols_var,
                 np.int32(batch), *_window(g))
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
    _elementwise("col2im", delta_mu.dtype, d_mu.size, cols_mu, cols_var, d_mu, d_var,
                 np.int32(batch), *_window(g))
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
    return reference.scale_param_sums(sums, var_w, var_b)


# ----------------------------------------------------------------------------- average pooling (§3.4, §5.4)

def avgpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> (B, C, Ho, Wo): window sums over K**2 (mean) and K**4 (variance)."""
    dtype, (mu_a, var_a) = _operands("avgpool2d_forward", mu_a=mu_a, var_a=var_a)
    batch = mu_a.shape[0]
    mu = cupy.empty((batch, g.channels, g.out_height, g.out_width), dtype=dtype)
    var = None if var_a is None else cupy.empty_like(mu)
    _elementwise("avgpool2d_forward", dtype, mu.size, mu_a, var_a, mu, var, np.int32(batch),
                 *_window(g))
    return mu, var


def avgpool2d_backward(delta_mu, delta_var, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W)."""
    return _pool2d_backward("avgpool2d_backward", delta_mu, delta_var, None, g)


def _pool2d_backward(op, delta_mu, delta_var, index, g):
    """The ``pool2d_backward`` kernel for ``op``: every window spreads its innovations over its
    cells (``index`` None: average pooling) or routes them to cell ``index`` (max pooling)."""
    dtype, (delta_mu, delta_var) = _operands(op, delta_mu=delta_mu, delta_var=delta_var)
    if index is not None:
        _check_on_device(op, {"index": index})
        index = cupy.ascontiguousarray(index, dtype=np.int32)
    batch = delta_mu.shape[0]
    d_mu = cupy.empty((batch, g.channels, g.height, g.width), dtype=dtype)
    d_var = None if delta_var is None else cupy.empty_like(d_mu)
    _elementwise("pool2d_backward", dtype, d_mu.size, delta_mu, delta_var, index, d_mu, d_var,
                 np.int32(batch), *_window(g))
    return d_mu, d_var


# ----------------------------------------------------------------------------- max pooling (§3.4.1, §5.4.1)

def maxpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> mu, var (B, C, Ho, Wo): each window's cell of largest mean; index int32."""
    dtype, (mu_a, var_a) = _operands("maxpool2d_forward", mu_a=mu_a, var_a=var_a)
    batch = mu_a.shape[0]
    mu = cupy.empty((batch, g.channels, g.out_height, g.out_width), dtype=dtype)
    var = None if var_a is None else cupy.empty_like(mu)
    index = cupy.empty(mu.shape, dtype=np.int32)
    _elementwise("maxpool2d_forward", dtype, mu.size, mu_a, var_a, mu, var, index, np.int32(batch),
                 *_window(g))
    return mu, var, index


def maxpool2d_backward(delta_mu, delta_var, index, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W), routed to ``index``."""
    return _pool2d_backward("maxpool2d_backward", delta_mu, delta_var, index, g)


# ----------------------------------------------------------------------------- activations (§3.5)

def relu_forward(mu_z, var_z):
    """Linearised ReLU: mu_a, var_a and the Jacobian J (1 where mu_z > 0, else 0), all like mu_z."""
    dtype, (mu_z, var_z) = _operands("relu_forward", mu_z=mu_z, var_z=var_z)
    mu_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    var_a = None if var_z is None else cupy.empty_like(mu_z)
    n = mu_z.size
    _elementwise("relu_forward", dtype, n, np.int32(n), mu_z, var_z, mu_a, var_a, jac)
    return mu_a, var_a, jac


def mixture_relu_forward(mu_z, var_z):
    """Exact moments of max(0, Z), Z ~ N(mu_z, var_z): mu_a, var_a, J = Phi(mu_z / sd_z)."""
    dtype, (mu_z, var_z) = _operands("mixture_relu_forward", mu_z=mu_z, var_z=var_z)
    mu_a, var_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    n = mu_z.size
    _elementwise("mixture_relu_forward", dtype, n, np.int32(n), mu_z, var_z, mu_a, var_a, jac)
    return mu_a, var_a, jac


def leaky_relu_forward(mu_z, var_z, negative_slope):
    """Linearised leaky ReLU: mu_a, var_a and J (1 where mu_z > 0, else negative_slope)."""
    dtype, (mu_z, var_z) = _operands("leaky_relu_forward", mu_z=mu_z, var_z=var_z)
    mu_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    var_a = None if var_z is None else cupy.empty_like(mu_z)
    n = mu_z.size
    _elementwise("leaky_relu_forward", dtype, n, np.int32(n), mu_z, var_z, dtype.type(negative_slope),
                 mu_a, var_a, jac)
    return mu_a, var_a, jac


def mixture_leaky_relu_forward(mu_z, var_z, negative_slope):
    """Exact moments of max(Z, 0) + negative_slope * min(Z, 0): mu_a, var_a, J = Cov(A, Z) / var_z."""
    dtype, (mu_z, var_z) = _operands("mixture_leaky_relu_forward", mu_z=mu_z, var_z=var_z)
    mu_a, var_a, jac = cupy.empty_like(mu_z), cupy.empty_like(mu_z), cupy.empty_like(mu_z)
    n = mu_z.size
    _elementwise("mixture_leaky_relu_forward", dtype, n, np.int32(n), mu_z, var_z,
                 dtype.type(negative_slope), mu_a, var_a, jac)
    return mu_a, var_a, jac


def scale_by_jacobian(delta_mu, delta_var, jac):
    """Innovations of an activation's output -> of its input: J * delta_mu, J**2 * delta_var."""
    dtype, (delta_mu, delta_var, jac) = _operands("scale_by_jacobian", delta_mu=delta_mu,
                                                  delta_var=delta_var, jac=jac)
    d_mu = cupy.empty_like(delta_mu)
    d_var = None if delta_var is None else cupy.empty_like(delta_mu)
    n = delta_mu.size
    _elementwise("scale_by_jacobian", dtype, n, np.int32(n), delta_mu, delta_var, jac, d_mu, d_var)
    return d_mu, d_var


# ----------------------------------------------------------------------------- output update (§4) and step (§6.2)

def gaussian_innovations(mu, var, y, sigma_v):
    """Observation y = z + v, v ~ N(0, sigma_v**2), elementwise on (B, N) arrays.

    delta_mu = (y - mu) / S, delta_var = -1 / S with S = var + sigma_v**2; where y is NaN
    (unobserved) or S is not finite, both deltas are 0.
    """
    dtype, (mu, var, y) = _operands("gaussian_innovations", mu=mu, var=var, y=y)
    delta_mu, delta_var = cupy.empty_like(mu), cupy.empty_like(mu)
    n = mu.size
    _elementwise("gaussian_innovations", dtype, n, np.int32(n), mu, var, y, dtype.type(sigma_v),
                 delta_mu, delta_var)
    return delta_mu, delta_var


def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var) / cap_factor; floor variances at 1e-5."""
    dtype, (flat_mu, flat_var, delta_mu, delta_var) = _operands(
        "capped_update", mu=mu, var=var, delta_mu=delta_mu, delta_var=delta_var)
    n = mu.size
    _elementwise("capped_update", dtype, n, np.int32(n), flat_mu, flat_var, delta_mu, delta_var,
                 dtype.type(cap_factor))
    for param, flat in ((mu, flat_mu), (var, flat_var)):
        if flat is not param:            # a view (or another dtype): the kernel updated a copy
            param[...] = flat


def normal_cdf(x):
    """Standard normal CDF, elementwise."""
    dtype, (x,) = _operands("normal_cdf", x=x)
    out = cupy.empty_like(x)
    _elementwise("normal_cdf", dtype, x.size, np.int32(x.size), x, out)
    return out
