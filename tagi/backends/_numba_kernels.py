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


@njit(cache=True, nogil=True)
def _valid(count, stride, offset, size):
    """The range [lo, hi) of o in [0, count) for which o*stride + offset lies in [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def is_same_conv(height, width, stride, ho, wo):
    """Stride 1 and an output as large as the input: every window cell is a flat shift of the map."""
    return stride == 1 and ho == height and wo == width


# ----------------------------------------------------------------------------- columns <-> images

def im2col(x, x_var, b0, kernel, stride, pad, ho, wo, cols, cols_sq, cols_var):
    """x (B, C, H, W) -> cols (C*K*K, nb*Ho*Wo) for samples b0.., padding reads 0.

    Optional, in the same pass: ``cols_sq`` receives the squares of the cells of x,
    ``cols_var`` the cells of ``x_var`` (a second map shaped like x).
    """
    if is_same_conv(x.shape[2], x.shape[3], stride, ho, wo):
        _im2col_same(x, x_var, b0, kernel, pad, cols, cols_sq, cols_var)
    else:
        _im2col_rows(x, x_var, b0, kernel, stride, pad, ho, wo, cols, cols_sq, cols_var)


def col2im(cols, cols_var, b0, kernel, stride, pad, ho, wo, out, out_var):
    """cols (C*K*K, nb*Ho*Wo) -> out[b0:b0+nb] of out (B, C, H, W): every input cell gets the
    sum of its copies in the windows that read it (copies in padding are dropped).

    ``cols_var -> out_var`` likewise, in the same pass (optional).
    """
    if is_same_conv(out.shape[2], out.shape[3], stride, ho, wo):
        _col2im_same(cols, cols_var, b0, kernel, pad, out, out_var)
    else:
        _col2im_rows(cols, cols_var, b0, kernel, stride, pad, ho, wo, out, out_var)


@njit(cache=True, nogil=True)
def _column_masks(kernel, pad, count, period, stride, sign, width):
    """inside[kx, i]: column (i % period)*stride + sign*(kx - pad) lies in [0, width)."""
    inside = np.empty((kernel, count), np.bool_)
    for kx in range(kernel):
        for i in range(count):
            inside[kx, i] = 0 <= (i % period) * stride + sign * (kx - pad) < width
    return inside


@njit(cache=True, nogil=True)
def _square(src, dst):
    for i in range(dst.size):
        dst[i] = src[i] * src[i]


@njit(cache=True, nogil=True)
def _shifted_copy(plane, shift, inside, dst):
    """dst[i] = plane[i + shift] where inside[i], else 0 (plane, inside, dst: flat (H*W,) maps)."""
    zero = dst.dtype.type(0)
    lo = max(0, -shift)
    hi = max(lo, min(dst.size, dst.size - shift))
    dst[:lo] = zero
    dst[hi:] = zero
    src, mask, mid = plane[lo + shift:hi + shift], inside[lo:hi], dst[lo:hi]
    for i in range(hi - lo):
        v = src[i]
        mid[i] = v if mask[i] else zero


@njit(parallel=True, cache=True, nogil=True)
def _im2col_same(x, x_var, b0, kernel, pad, cols, cols_sq, cols_var):
    """im2col of a stride-1 'same' window: the row of cell (c, ky, kx) is channel c shifted by
    (ky - pad)*W + kx - pad in flat (H*W) order, with the columns that wrapped set to 0."""
    height, width = x.shape[2], x.shape[3]
    kk, area = kernel * kernel, height * width
    nb = cols.shape[1] // area
    inside = _column_masks(kernel, pad, area, width, 1, 1, width)
    for t in prange(cols.shape[0] * nb):
        row, b = t // nb, t % nb
        c, ky, kx = row // kk, (row % kk) // kernel, row % kernel
        shift, span = (ky - pad) * width + kx - pad, slice(b * area, (b + 1) * area)
        _shifted_copy(x[b0 + b, c].reshape(-1), shift, inside[kx], cols[row, span])
        if cols_sq is not None:
            _square(cols[row, span], cols_sq[row, span])
        if x_var is not None:
            _shifted_copy(x_var[b0 + b, c].reshape(-1), shift, inside[kx], cols_var[row, span])


@njit(cache=True, nogil=True)
def _window_rows(plane, ky, kx, stride, pad, ho, wo, dst):
    """dst (Ho*Wo,) = cell (ky, kx) of every window over plane (H, W), 0 in padding."""
    ox_lo, ox_hi = _valid(wo, stride, kx - pad, plane.shape[1])
    oy_lo, oy_hi = _valid(ho, stride, ky - pad, plane.shape[0])
    dst[:] = 0
    for oy in range(oy_lo, oy_hi):
        src = plane[oy * stride + ky - pad, ox_lo * stride + kx - pad::stride]
        seg = dst[oy * wo + ox_lo:oy * wo + ox_hi]
        for i in range(ox_hi - ox_lo):
            seg[i] = src[i]


@njit(parallel=True, cache=True, nogil=True)
def _im2col_rows(x, x_var, b0, kernel, stride, pad, ho, wo, cols, cols_sq, cols_var):
    """im2col of any window, one output row at a time."""
    kk, area = kernel * kernel, ho * wo
    nb = cols.shape[1] // area
    for t in prange(cols.shape[0] * nb):
        row, b = t // nb, t % nb
        c, ky, kx = row // kk, (row % kk) // kernel, row % kernel
        span = slice(b * area, (b + 1) * area)
        _window_rows(x[b0 + b, c], ky, kx, stride, pad, ho, wo, cols[row, span])
        if cols_sq is not None:
            _square(cols[row, span], cols_sq[row, span])
        if x_var is not None:
            _window_rows(x_var[b0 + b, c], ky, kx, stride, pad, ho, wo, cols_var[row, span])


@njit(cache=True, nogil=True)
def _shifted_sums(cols, first_row, start, kernel, pad, width, inside, plane):
    """plane (H*W,) = sum over cells (ky, kx) of rows first_row + ky*K + kx of cols, read from
    column start on and shifted back by (ky - pad)*W + kx - pad; wrapped columns masked out."""
    zero = plane.dtype.type(0)
    area = plane.size
    plane[:] = zero
    for ky in range(kernel):
        for kx in range(kernel):
            shift = (ky - pad) * width + kx - pad
            lo, hi = max(0, shift), max(0, min(area, area + shift))
            src = cols[first_row + ky * kernel + kx, start + lo - shift:start + hi - shift]
            dst, mask = plane[lo:hi], inside[kx, lo:hi]
            for i in range(hi - lo):
                v = src[i]
                dst[i] += v if mask[i] else zero


@njit(parallel=True, cache=True, nogil=True)
def _col2im_same(cols, cols_var, b0, kernel, pad, out, out_var):
    """col2im of a stride-1 'same' window: flat shifted adds, wrapped columns masked out."""
    channels, height, width = out.shape[1], out.shape[2], out.shape[3]
    area = height * width
    nb = cols.shape[1] // area
    inside = _column_masks(kernel, pad, area, width, 1, -1, width)
    for t in prange(nb * channels):
        b, c = t // channels, t % channels
        first_row = c * kernel * kernel
        _shifted_sums(cols, first_row, b * area, kernel, pad, width, inside,
                      out[b0 + b, c].reshape(-1))
        if cols_var is not None:
            _shifted_sums(cols_var, first_row, b * area, kernel, pad, width, inside,
                          out_var[b0 + b, c].reshape(-1))


@njit(cache=True, nogil=True)
def _window_sums(cols, first_row, start, kernel, stride, pad, ho, wo, plane):
    """plane (H, W) = sum over window cells (ky, kx) of rows first_row + ky*K + kx of cols
    (columns start.. in (oy, ox) order) added back where they were read."""
    plane[:] = 0
    for ky in range(kernel):
        oy_lo, oy_hi = _valid(ho, stride, ky - pad, plane.shape[0])
        for kx in range(kernel):
            ox_lo, ox_hi = _valid(wo, stride, kx - pad, plane.shape[1])
            row = first_row + ky * kernel + kx
            for oy in range(oy_lo, oy_hi):
                dst = plane[oy * stride + ky - pad, ox_lo * stride + kx - pad::stride]
                src = cols[row, start + oy * wo + ox_lo:start + oy * wo + ox_hi]
                for i in range(ox_hi - ox_lo):
                    dst[i] += src[i]


@njit(parallel=True, cache=True, nogil=True)
def _col2im_rows(cols, cols_var, b0, kernel, stride, pad, ho, wo, out, out_var):
    """col2im of any window, one output row at a time."""
    channels = out.shape[1]
    area = ho * wo
    nb = cols.shape[1] // area
    for t in prange(nb * channels):
        b, c = t // channels, t % channels
        first_row = c * kernel * kernel
        _window_sums(cols, first_row, b * area, kernel, stride, pad, ho, wo, out[b0 + b, c])
        if cols_var is not None:
            _window_sums(cols_var, first_row, b * area, kernel, stride, pad, ho, wo,
                         out_var[b0 + b, c])


@njit(parallel=True, cache=True, nogil=True)
def cols_to_images(z, z_var, bias, bias_var, b0, out, out_var):
    """GEMM output z (Co, nb*L) + bias (Co,) -> out[b0:b0+nb] of out (B, Co, L).

    ``z_var + bias_var -> out_var`` likewise, in the same pass (optional).
    """
    c_out, area = out.shape[1], out.shape[2]
    nb = z.shape[1] // area
    for t in prange(nb * c_out):
        b, co = t // c_out, t % c_out
        src, dst = z[co, b * area:(b + 1) * area], out[b0 + b, co]
        for i in range(area):
            dst[i] = src[i] + bias[co]
        if z_var is not None:
            src, dst = z_var[co, b * area:(b + 1) * area], out_var[b0 + b, co]
            for i in range(area):
                dst[i] = src[i] + bias_var[co]


@njit(parallel=True, cache=True, nogil=True)
def images_to_cols(x, x_var, b0, out, out_var):
    """x[b0:b0+nb] of x (B, Co, L) -> out (Co, nb*L); ``x_var -> out_var`` likewise (optional)."""
    c_out, area = x.shape[1], x.shape[2]
    nb = out.shape[1] // area
    for t in prange(nb * c_out):
        b, co = t // c_out, t % c_out
        src, dst = x[b0 + b, co], out[co, b * area:(b + 1) * area]
        for i in range(area):
            dst[i] = src[i]
        if x_var is not None:
            src, dst = x_var[b0 + b, co], out_var[co, b * area:(b + 1) * area]
            for i in range(area):
                dst[i] = src[i]


# ----------------------------------------------------------------------------- average pooling

@njit(cache=True, nogil=True)
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
    rows = np.empty((ho, width), x.dtype)                 # rows[oy] = sum of window row oy's inputs
    for t in range(batch * channels):
        b, c = t // channels, t % channels
        rows[:] = zero
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


@njit(cache=True, nogil=True)
def pool_spread(delta, kernel, stride, pad, scale, out):
    """out (B, C, H, W): every input cell gets scale * the sum of delta (B, C, Ho, Wo) over the
    windows that read it.

    Separable, like ``pool_sum`` in reverse: first each delta row is spread over the K columns
    of its windows (``rows``, (Ho, W)), then each of those rows is added to the K input rows
    of its windows (whole rows, long loops)."""
    batch, channels, height, width = out.shape
    ho, wo = delta.shape[2], delta.shape[3]
    rows = np.empty((ho, width), delta.dtype)             # rows[oy] = window row oy's spread
    for t in range(batch * channels):
        b, c = t // channels, t % channels
        rows[:] = 0
        for kx in range(kernel):
            ox_lo, ox_hi = _valid(wo, stride, kx - pad, width)
            for oy in range(ho):
                dst = rows[oy, ox_lo * stride + kx - pad::stride]
                src = delta[b, c, oy, ox_lo:ox_hi]
                for i in range(ox_hi - ox_lo):
                    dst[i] += src[i] * scale
        plane = out[b, c]
        plane[:] = 0
        for oy in range(ho):
            ky_lo, ky_hi = _valid(kernel, 1, oy * stride - pad, height)
            src = rows[oy]
            for ky in range(ky_lo, ky_hi):
                dst = plane[oy * stride + ky - pad]
                for i in range(width):
                    dst[i] += src[i]


# ----------------------------------------------------------------------------- elementwise (flat arrays)
# Serial: memory-bound passes of at most a few MiB, which one core streams faster than two
# threads can be handed the work.

@njit(cache=True, nogil=True)
def relu(mu_z, var_z, mu_a, var_a, jac):
    """Linearised ReLU: jac = 1 where mu_z > 0 else 0; mu_a = mu_z*jac, var_a = var_z*jac (optional)."""
    one, zero = mu_z.dtype.type(1), mu_z.dtype.type(0)
    for i in range(mu_z.size):
        j = one if mu_z[i] > 0 else zero
        jac[i] = j
        mu_a[i] = mu_z[i] * j
        if var_z is not None:
            var_a[i] = var_z[i] * j


@njit(cache=True, nogil=True)
def scale_by_jacobian(delta_mu, delta_var, jac, out_mu, out_var):
    """out_mu = jac*delta_mu; out_var = jac**2 * delta_var (optional)."""
    for i in range(delta_mu.size):
        out_mu[i] = delta_mu[i] * jac[i]
        if delta_var is not None:
            out_var[i] = delta_var[i] * (jac[i] * jac[i])


@njit(cache=True, nogil=True)
def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var)/cap_factor; floor variances at 1e-5."""
    floor = var.dtype.type(1e-5)
    for i in range(mu.size):
        bound = np.sqrt(var[i]) / cap_factor
        mu[i] += np.sign(delta_mu[i]) * min(abs(delta_mu[i]), bound)
        v = var[i] + np.sign(delta_var[i]) * min(abs(delta_var[i]), bound)
        var[i] = floor if v <= 0 else v


# ----------------------------------------------------------------------------- max pooling

@njit(parallel=True, cache=True, nogil=True)
def maxpool_forward(mu, var, kernel, stride, pad, out_mu, out_var, index):
    """Per window of mu (B, C, H, W): out_mu, index (B, C, Ho, Wo) = the largest mean of its input
    cells and that cell's place ky*K + kx (the first in row-major order on ties); padding never
    wins. out_var = var at that cell (optional)."""
    batch, channels, height, width = mu.shape
    ho, wo = out_mu.shape[2], out_mu.shape[3]
    for t in prange(batch * channels):
        b, c = t // channels, t % channels
        for oy in range(ho):
            ky_lo, ky_hi = _valid(kernel, 1, oy * stride - pad, height)
            for ox in range(wo):
                kx_lo, kx_hi = _valid(kernel, 1, ox * stride - pad, width)
                best_ky, best_kx = ky_lo, kx_lo
                best = mu[b, c, oy * stride + ky_lo - pad, ox * stride + kx_lo - pad]
                for ky in range(ky_lo, ky_hi):
                    for kx in range(kx_lo, kx_hi):
                        v = mu[b, c, oy * stride + ky - pad, ox * stride + kx - pad]
                        if v > best:
                            best, best_ky, best_kx = v, ky, kx
                out_mu[b, c, oy, ox] = best
                index[b, c, oy, ox] = best_ky * kernel + best_kx
                if var is not None:
                    out_var[b, c, oy, ox] = var[b, c, oy * stride + best_ky - pad,
                                                ox * stride + best_kx - pad]


@njit(parallel=True, cache=True, nogil=True)
def maxpool_route(delta, index, kernel, stride, pad, out):
    """out (B, C, H, W): every input cell gets the sum of delta (B, C, Ho, Wo) over the windows
    whose ``index`` names it."""
    batch, channels = out.shape[0], out.shape[1]
    ho, wo = delta.shape[2], delta.shape[3]
    for t in prange(batch * channels):
        b, c = t // channels, t % channels
        plane = out[b, c]
        plane[:] = 0
        for oy in range(ho):
            for ox in range(wo):
                r = index[b, c, oy, ox]
                plane[oy * stride + r // kernel - pad, ox * stride + r % kernel - pad] += delta[b, c, oy, ox]


# ----------------------------------------------------------------------------- leaky ReLU (flat arrays)

@njit(cache=True, nogil=True)
def leaky_relu(mu_z, var_z, negative_slope, mu_a, var_a, jac):
    """Linearised leaky ReLU: jac = 1 where mu_z > 0 else negative_slope; mu_a = mu_z*jac,
    var_a = var_z*jac**2 (optional)."""
    one = mu_z.dtype.type(1)
    for i in range(mu_z.size):
        j = one if mu_z[i] > 0 else negative_slope
        jac[i] = j
        mu_a[i] = mu_z[i] * j
        if var_z is not None:
            var_a[i] = var_z[i] * (j * j)
