"""Numba kernels of the CPU backend: window gathers and scatters, pooling, elementwise passes.

A column matrix ``cols`` of shape ``(C*K*K, nb*Ho*Wo)`` holds, for ``nb``
consecutive samples ``b0 .. b0+nb-1`` of an image batch, one row per window
cell ``(c, ky, kx)`` (the weight order) and one column per output position
``(b, oy, ox)`` (sample-major). A conv layer is then one GEMM per moment;
the GEMMs run in BLAS (``numba_backend``), everything around them runs here.

Kernels write into the arrays they are given. An argument documented as
optional may be ``None``: Numba then compiles a specialisation without that
branch, so a mean-only pass costs nothing for its missing variance.

Speed note: inner loops index array views with a loop counter that starts at
0. An index that Numba cannot prove non-negative gets a wraparound check,
which stops LLVM from vectorising the loop (it falls back to gathers and
scatters, several times slower).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _valid(count, stride, offset, size):
    """The range [lo, hi) of o in [0, count) for which o*stride + offset lies in [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def is_same_conv(height, width, stride, ho, wo):
    """Stride 1 and an output as large as the input: every window cell is a flat shift of the map."""
    return stride == 1 and ho == height and wo == width


# ----------------------------------------------------------------------------- columns <-> images

def im2col(x, b0, kernel, stride, pad, ho, wo, cols, cols_sq):
    """x (B, C, H, W) -> cols (C*K*K, nb*Ho*Wo) for samples b0.., padding reads 0.

    ``cols_sq`` (same shape, optional) receives the squares of the same cells.
    """
    if is_same_conv(x.shape[2], x.shape[3], stride, ho, wo):
        _im2col_same(x, b0, kernel, pad, cols, cols_sq)
    else:
        _im2col_rows(x, b0, kernel, stride, pad, ho, wo, cols, cols_sq)


def col2im(cols, b0, kernel, stride, pad, ho, wo, out):
    """cols (C*K*K, nb*Ho*Wo) -> out[b0:b0+nb] of out (B, C, H, W): every input cell gets the
    sum of its copies in the windows that read it (copies in padding are dropped)."""
    if is_same_conv(out.shape[2], out.shape[3], stride, ho, wo):
        _col2im_same(cols, b0, kernel, pad, out)
    else:
        _col2im_rows(cols, b0, kernel, stride, pad, ho, wo, out)


@njit(cache=True)
def _column_masks(kernel, pad, count, period, stride, sign, width):
    """inside[kx, i]: column (i % period)*stride + sign*(kx - pad) lies in [0, width)."""
    inside = np.empty((kernel, count), np.bool_)
    for kx in range(kernel):
        for i in range(count):
            inside[kx, i] = 0 <= (i % period) * stride + sign * (kx - pad) < width
    return inside


@njit(parallel=True, cache=True)
def _im2col_same(x, b0, kernel, pad, cols, cols_sq):
    """im2col of a stride-1 'same' window: the row of cell (c, ky, kx) is channel c shifted by
    (ky - pad)*W + kx - pad in flat (H*W) order, with the columns that wrapped set to 0."""
    height, width = x.shape[2], x.shape[3]
    kk, area = kernel * kernel, height * width
    nb = cols.shape[1] // area
    zero = x.dtype.type(0)
    inside = _column_masks(kernel, pad, area, width, 1, 1, width)
    for t in prange(cols.shape[0] * nb):
        row, b = t // nb, t % nb
        c, ky, kx = row // kk, (row % kk) // kernel, row % kernel
        shift = (ky - pad) * width + kx - pad
        lo = max(0, -shift)
        hi = max(lo, min(area, area - shift))
        src = x[b0 + b, c].reshape(-1)[lo + shift:hi + shift]
        mask = inside[kx, lo:hi]
        dst = cols[row, b * area:(b + 1) * area]
        dst[:lo] = zero
        dst[hi:] = zero
        mid = dst[lo:hi]
        for i in range(hi - lo):
            v = src[i]
            mid[i] = v if mask[i] else zero
        if cols_sq is not None:
            dst_sq = cols_sq[row, b * area:(b + 1) * area]
            for i in range(area):
                dst_sq[i] = dst[i] * dst[i]


@njit(parallel=True, cache=True)
def _im2col_rows(x, b0, kernel, stride, pad, ho, wo, cols, cols_sq):
    """im2col of any window, one output row at a time."""
    height, width = x.shape[2], x.shape[3]
    kk, area = kernel * kernel, ho * wo
    nb = cols.shape[1] // area
    zero = x.dtype.type(0)
    for t in prange(cols.shape[0] * nb):
        row, b = t // nb, t % nb
        c, ky, kx = row // kk, (row % kk) // kernel, row % kernel
        oy_lo, oy_hi = _valid(ho, stride, ky - pad, height)
        ox_lo, ox_hi = _valid(wo, stride, kx - pad, width)
        dst = cols[row, b * area:(b + 1) * area]
        dst[:] = zero
        for oy in range(oy_lo, oy_hi):
            src = x[b0 + b, c, oy * stride + ky - pad, ox_lo * stride + kx - pad::stride]
            seg = dst[oy * wo + ox_lo:oy * wo + ox_hi]
            for i in range(ox_hi - ox_lo):
                seg[i] = src[i]
        if cols_sq is not None:
            dst_sq = cols_sq[row, b * area:(b + 1) * area]
            for i in range(area):
                dst_sq[i] = dst[i] * dst[i]


@njit(parallel=True, cache=True)
def _col2im_same(cols, b0, kernel, pad, out):
    """col2im of a stride-1 'same' window: flat shifted adds, wrapped columns masked out."""
    channels, height, width = out.shape[1], out.shape[2], out.shape[3]
    area = height * width
    nb = cols.shape[1] // area
    zero = cols.dtype.type(0)
    inside = _column_masks(kernel, pad, area, width, 1, -1, width)
    for t in prange(nb * channels):
        b, c = t // channels, t % channels
        plane = out[b0 + b, c].reshape(-1)
        plane[:] = zero
        for ky in range(kernel):
            for kx in range(kernel):
                shift = (ky - pad) * width + kx - pad
                lo, hi = max(0, shift), max(0, min(area, area + shift))
                start = b * area + lo - shift
                src = cols[(c * kernel + ky) * kernel + kx, start:start + hi - lo]
                dst = plane[lo:hi]
                mask = inside[kx, lo:hi]
                for i in range(hi - lo):
                    v = src[i]
                    dst[i] += v if mask[i] else zero


@njit(parallel=True, cache=True)
def _col2im_rows(cols, b0, kernel, stride, pad, ho, wo, out):
    """col2im of any window, one output row at a time."""
    channels, height, width = out.shape[1], out.shape[2], out.shape[3]
    area = ho * wo
    nb = cols.shape[1] // area
    for t in prange(nb * channels):
        b, c = t // channels, t % channels
        plane = out[b0 + b, c]
        plane[:] = 0
        for ky in range(kernel):
            oy_lo, oy_hi = _valid(ho, stride, ky - pad, height)
            for kx in range(kernel):
                ox_lo, ox_hi = _valid(wo, stride, kx - pad, width)
                row = (c * kernel + ky) * kernel + kx
                for oy in range(oy_lo, oy_hi):
                    dst = plane[oy * stride + ky - pad, ox_lo * stride + kx - pad::stride]
                    start = b * area + oy * wo
                    src = cols[row, start + ox_lo:start + ox_hi]
                    for i in range(ox_hi - ox_lo):
                        dst[i] += src[i]


@njit(parallel=True, cache=True)
def cols_to_images(z, bias, b0, out):
    """GEMM output z (Co, nb*L) + bias (Co,) -> out[b0:b0+nb] of out (B, Co, L)."""
    c_out, area = out.shape[1], out.shape[2]
    nb = z.shape[1] // area
    for t in prange(nb * c_out):
        b, co = t // c_out, t % c_out
        src, dst = z[co, b * area:(b + 1) * area], out[b0 + b, co]
        for i in range(area):
            dst[i] = src[i] + bias[co]


@njit(parallel=True, cache=True)
def images_to_cols(x, b0, out):
    """x[b0:b0+nb] of x (B, Co, L) -> out (Co, nb*L)."""
    c_out, area = x.shape[1], x.shape[2]
    nb = out.shape[1] // area
    for t in prange(nb * c_out):
        b, co = t // c_out, t % c_out
        src, dst = x[b0 + b, co], out[co, b * area:(b + 1) * area]
        for i in range(area):
            dst[i] = src[i]


# ----------------------------------------------------------------------------- average pooling

@njit(parallel=True, cache=True)
def pool_sum(x, kernel, stride, pad, divisor, out):
    """out (B, C, Ho, Wo) = (sum of x (B, C, H, W) over each window) / divisor; padding reads 0.

    Separable: first the sums of each window's K input rows (whole rows, long loops), then
    the sums of K strided cells of those; when W = stride*Wo (windows tile the rows, as in
    the CIFAR pools) the second pass runs over the flattened plane, one loop per kx.
    """
    batch, channels, height, width = x.shape
    ho, wo = out.shape[2], out.shape[3]
    zero = x.dtype.type(0)
    flat = width == stride * wo
    inside = _column_masks(kernel, pad, ho * wo, wo, stride, 1, width)
    for t in prange(batch * channels):
        b, c = t // channels, t % channels
        rows = np.zeros((ho, width), x.dtype)             # rows[oy] = sum of window row oy's inputs
        for oy in range(ho):
            ky_lo, ky_hi = _valid(kernel, 1, oy * stride - pad, height)
            dst = rows[oy]
            for ky in range(ky_lo, ky_hi):
                src = x[b, c, oy * stride + ky - pad]
                for i in range(width):
                    dst[i] += src[i]
        plane = out[b, c]
        plane[:] = zero
        for kx in range(kernel):
            if flat:                                      # window i reads rows.flat[stride*i + kx - pad]
                lo, hi = _valid(ho * wo, stride, kx - pad, ho * width)
                src = rows.reshape(-1)[stride * lo + kx - pad::stride]
                dst = plane.reshape(-1)[lo:hi]
                mask = inside[kx, lo:hi]
                for i in range(hi - lo):
                    v = src[i]
                    dst[i] += v if mask[i] else zero
            else:
                ox_lo, ox_hi = _valid(wo, stride, kx - pad, width)
                for oy in range(ho):
                    src = rows[oy, ox_lo * stride + kx - pad::stride]
                    dst = plane[oy, ox_lo:ox_hi]
                    for i in range(ox_hi - ox_lo):
                        dst[i] += src[i]
        for oy in range(ho):
            row = plane[oy]
            for i in range(wo):
                row[i] /= divisor


@njit(parallel=True, cache=True)
def pool_spread(delta, kernel, stride, pad, scale, out):
    """out (B, C, H, W): every input cell gets scale * the sum of delta (B, C, Ho, Wo) over the
    windows that read it."""
    batch, channels, height, width = out.shape
    ho, wo = delta.shape[2], delta.shape[3]
    for t in prange(batch * channels):
        b, c = t // channels, t % channels
        plane = out[b, c]
        plane[:] = 0
        for ky in range(kernel):
            oy_lo, oy_hi = _valid(ho, stride, ky - pad, height)
            for kx in range(kernel):
                ox_lo, ox_hi = _valid(wo, stride, kx - pad, width)
                for oy in range(oy_lo, oy_hi):
                    dst = plane[oy * stride + ky - pad, ox_lo * stride + kx - pad::stride]
                    src = delta[b, c, oy, ox_lo:ox_hi]
                    for i in range(ox_hi - ox_lo):
                        dst[i] += src[i] * scale


# ----------------------------------------------------------------------------- elementwise (flat arrays)

@njit(parallel=True, cache=True)
def relu(mu_z, var_z, mu_a, var_a, jac):
    """Linearised ReLU: jac = 1 where mu_z > 0 else 0; mu_a = mu_z*jac, var_a = var_z*jac (optional)."""
    one, zero = mu_z.dtype.type(1), mu_z.dtype.type(0)
    for i in prange(mu_z.size):
        j = one if mu_z[i] > 0 else zero
        jac[i] = j
        mu_a[i] = mu_z[i] * j
        if var_z is not None:
            var_a[i] = var_z[i] * j


@njit(parallel=True, cache=True)
def scale_by_jacobian(delta_mu, delta_var, jac, out_mu, out_var):
    """out_mu = jac*delta_mu; out_var = jac**2 * delta_var (optional)."""
    for i in prange(delta_mu.size):
        out_mu[i] = delta_mu[i] * jac[i]
        if delta_var is not None:
            out_var[i] = delta_var[i] * (jac[i] * jac[i])


@njit(parallel=True, cache=True)
def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var)/cap_factor; floor variances at 1e-5."""
    floor = var.dtype.type(1e-5)
    for i in prange(mu.size):
        bound = np.sqrt(var[i]) / cap_factor
        mu[i] += np.sign(delta_mu[i]) * min(abs(delta_mu[i]), bound)
        v = var[i] + np.sign(delta_var[i]) * min(abs(delta_var[i]), bound)
        var[i] = floor if v <= 0 else v
