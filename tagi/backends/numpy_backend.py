"""NumPy reference backend: the math of docs/math.md, nearly line for line.

Every other backend is checked against this one. Shapes: images are NCHW
``(B, C, H, W)``, vectors ``(B, N)``; ``g`` is a ``tagi.geometry.Window2d``.
Functions return new arrays, except ``capped_update``, which updates the
parameters in place.

``None`` marks a missing variance part, and the op skips its arithmetic:
``var_a=None`` an exact input (zero variance, the network input);
``var_w=None`` point weights: a plain mean pass, ``var_z`` comes back ``None``
(the backprop forward); ``delta_var=None`` in a backward op or a parameter-delta
op: only the mean part is computed (the backprop backward). A parameter-delta
op with ``var_w=None`` returns the unscaled sums (the backprop gradients).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr

NAME = "numpy"
xp = np


def asarray(x, dtype=None):
    """Host array -> backend array (no copy when it already fits)."""
    return np.asarray(x, dtype=dtype)


def to_numpy(x):
    """Backend array -> host numpy array."""
    return np.asarray(x)


def synchronize():
    """Wait for queued work (nothing is queued on the CPU)."""


def batch_parts(batch):
    """The parts a network runs a batch of ``batch`` samples in, as (first, count) ranges: here
    one, the whole batch (the numba backend gives up to 8, fixed by the batch size)."""
    return [(0, batch)]


def run_parts(ranges, task):
    """``task(first, count)`` for each range of ``batch_parts`` -> the results, in range order."""
    return [task(first, count) for first, count in ranges]


# ----------------------------------------------------------------------------- patches

def im2col(x, g, fill=0):
    """(B, C, H, W) -> (B, C*K*K, Ho*Wo): the input cells under each window; padding reads ``fill``."""
    k, pb, pe = g.kernel, g.pad_begin, g.pad_end
    padded = np.pad(x, ((0, 0), (0, 0), (pb, pe), (pb, pe)), constant_values=fill)
    win = sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::g.stride, ::g.stride]
    win = win[:, :, :g.out_height, :g.out_width]            # (B, C, Ho, Wo, K, K)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(x.shape[0], g.patch_size, -1)


def col2im(cols, g):
    """(B, C*K*K, Ho*Wo) -> (B, C, H, W): scatter-add each window's cells back; padding is dropped."""
    k, s, ho, wo = g.kernel, g.stride, g.out_height, g.out_width
    b = cols.shape[0]
    cols = cols.reshape(b, g.channels, k, k, ho, wo)
    out = np.zeros((b, g.channels, g.height + g.pad_begin + g.pad_end,
                    g.width + g.pad_begin + g.pad_end), dtype=cols.dtype)
    for ky in range(k):
        for kx in range(k):
            out[:, :, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s] += cols[:, :, ky, kx]
    return out[:, :, g.pad_begin:g.pad_begin + g.height, g.pad_begin:g.pad_begin + g.width]


# ----------------------------------------------------------------------------- linear (§3.2, §5.2, §6.1)

def linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b):
    """(B, N_in) inputs, (N_out, N_in) weights, (N_out,) biases -> mu_z, var_z (B, N_out)."""
    mu_z = mu_a @ mu_w.T + mu_b
    if var_w is None:
        return mu_z, None
    var_z = (mu_a * mu_a) @ var_w.T + var_b
    if var_a is not None:
        var_z += var_a @ (mu_w * mu_w + var_w).T
    return mu_z, var_z


def linear_backward(delta_mu, delta_var, mu_w):
    """Output innovations (B, N_out) -> input innovations (B, N_in), with the prior mu_w."""
    if delta_var is None:
        return delta_mu @ mu_w, None
    return delta_mu @ mu_w, delta_var @ (mu_w * mu_w)


def linear_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b):
    """Parameter deltas summed over the batch: dmu_w, dvar_w (N_out, N_in); dmu_b, dvar_b (N_out,)."""
    sums = [delta_mu.T @ mu_a, None, delta_mu.sum(0), None]
    if delta_var is not None:
        sums[1], sums[3] = delta_var.T @ (mu_a * mu_a), delta_var.sum(0)
    return scale_param_sums(sums, var_w, var_b)


# ----------------------------------------------------------------------------- conv2d (§3.3, §5.3, §6.1)

def conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g):
    """(B, C, H, W) inputs, (Co, C, K, K) weights, (Co,) biases -> mu_z, var_z (B, Co, Ho, Wo)."""
    c_out = mu_w.shape[0]
    w_mu = mu_w.reshape(c_out, -1)
    shape = (mu_a.shape[0], c_out, g.out_height, g.out_width)
    p_mu = im2col(mu_a, g)                                   # (B, C*K*K, L)
    mu_z = (w_mu @ p_mu + mu_b[:, None]).reshape(shape)
    if var_w is None:
        return mu_z, None
    w_var = var_w.reshape(c_out, -1)
    var_z = w_var @ (p_mu * p_mu) + var_b[:, None]
    if var_a is not None:
        var_z += (w_mu * w_mu + w_var) @ im2col(var_a, g)
    return mu_z, var_z.reshape(shape)


def conv2d_backward(delta_mu, delta_var, mu_w, g):
    """Output innovations (B, Co, Ho, Wo) -> input innovations (B, C, H, W): transposed correlation."""
    b, c_out = delta_mu.shape[:2]
    w_mu = mu_w.reshape(c_out, -1)
    d_mu = col2im(w_mu.T @ delta_mu.reshape(b, c_out, -1), g)        # from (B, C*K*K, L)
    if delta_var is None:
        return d_mu, None
    return d_mu, col2im((w_mu * w_mu).T @ delta_var.reshape(b, c_out, -1), g)


def conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    """Deltas summed over batch and positions: dmu_w, dvar_w (Co, C, K, K); dmu_b, dvar_b (Co,)."""
    b, c_out = delta_mu.shape[:2]
    p_mu = im2col(mu_a, g)                                   # (B, C*K*K, L)
    w_shape = (c_out, g.channels, g.kernel, g.kernel)
    d_mu = delta_mu.reshape(b, c_out, -1)                    # (B, Co, L)
    sums = [np.einsum("bol,bkl->ok", d_mu, p_mu, optimize=True).reshape(w_shape), None,
            d_mu.sum((0, 2)), None]
    if delta_var is not None:
        d_var = delta_var.reshape(b, c_out, -1)
        sums[1] = np.einsum("bol,bkl->ok", d_var, p_mu * p_mu, optimize=True).reshape(w_shape)
        sums[3] = d_var.sum((0, 2))
    return scale_param_sums(sums, var_w, var_b)


def scale_param_sums(sums, var_w, var_b):
    """[sum a*dmu, sum a^2*dvar, sum dmu, sum dvar] -> deltas (x var, var^2); var_w None: unscaled.

    The last step of every backend's ``*_param_deltas`` (docs/math.md §6.1): the sums are formed
    on the backend, this scales them by the prior variances.
    """
    if var_w is None:
        return tuple(sums)
    dmu_w, dvar_w, dmu_b, dvar_b = sums
    return (var_w * dmu_w, None if dvar_w is None else var_w * var_w * dvar_w,
            var_b * dmu_b, None if dvar_b is None else var_b * var_b * dvar_b)


# ----------------------------------------------------------------------------- average pooling (§3.4, §5.4)

def avgpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> (B, C, Ho, Wo): window sums over K**2 (mean) and K**4 (variance)."""
    b, k2 = mu_a.shape[0], g.kernel * g.kernel
    shape = (b, g.channels, g.out_height, g.out_width)
    mu = im2col(mu_a, g).reshape(b, g.channels, k2, -1).sum(2) / k2
    if var_a is None:
        return mu.reshape(shape), None
    var = im2col(var_a, g).reshape(b, g.channels, k2, -1).sum(2) / (k2 * k2)
    return mu.reshape(shape), var.reshape(shape)


def avgpool2d_backward(delta_mu, delta_var, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W)."""
    b, k2 = delta_mu.shape[0], g.kernel * g.kernel

    def spread(delta, scale):                                 # every window cell gets delta * scale
        cols = np.broadcast_to(delta.reshape(b, g.channels, 1, -1) * scale,
                               (b, g.channels, k2, g.out_height * g.out_width))
        return col2im(cols.reshape(b, g.patch_size, -1), g)

    if delta_var is None:
        return spread(delta_mu, 1.0 / k2), None
    return spread(delta_mu, 1.0 / k2), spread(delta_var, 1.0 / (k2 * k2))


# ----------------------------------------------------------------------------- max pooling (§3.4.1, §5.4.1)

def maxpool2d_forward(mu_a, var_a, g):
    """(B, C, H, W) -> mu, var (B, C, Ho, Wo) and index (B, C, Ho, Wo) int32.

    Per window, the moments of the cell with the largest mean; ``index`` is that cell's place
    r = ky*K + kx in the window, the first in this row-major order on ties. Padding reads -inf,
    so it never wins (``tagi.nn.MaxPool2d`` keeps every window on at least one input cell).
    """
    b, k2 = mu_a.shape[0], g.kernel * g.kernel
    shape = (b, g.channels, g.out_height, g.out_width)
    cells = im2col(mu_a, g, fill=-np.inf).reshape(b, g.channels, k2, -1)   # (B, C, K*K, L)
    index = cells.argmax(2)[:, :, None]                                   # (B, C, 1, L)
    mu = np.take_along_axis(cells, index, 2).reshape(shape)
    if var_a is not None:
        var_a = np.take_along_axis(im2col(var_a, g).reshape(b, g.channels, k2, -1), index, 2)
        var_a = var_a.reshape(shape)
    return mu, var_a, index.reshape(shape).astype(np.int32)


def maxpool2d_backward(delta_mu, delta_var, index, g):
    """Output innovations (B, C, Ho, Wo) -> input innovations (B, C, H, W): each window's
    innovations go to its cell ``index`` (Jacobian 1 there, 0 elsewhere), summed where windows
    overlap."""
    b, k2 = delta_mu.shape[0], g.kernel * g.kernel
    winner = np.arange(k2)[:, None] == index.reshape(b, g.channels, 1, -1)   # (B, C, K*K, L)

    def route(delta):
        cols = np.where(winner, delta.reshape(b, g.channels, 1, -1), 0).astype(delta.dtype)
        return col2im(cols.reshape(b, g.patch_size, -1), g)

    return route(delta_mu), None if delta_var is None else route(delta_var)


# ----------------------------------------------------------------------------- activations (§3.5)

def relu_forward(mu_z, var_z):
    """Linearised ReLU: mu_a, var_a and the Jacobian J (1 where mu_z > 0, else 0), all like mu_z."""
    jac = (mu_z > 0).astype(mu_z.dtype)
    return mu_z * jac, None if var_z is None else var_z * jac, jac


def leaky_relu_forward(mu_z, var_z, negative_slope):
    """Linearised leaky ReLU: J = 1 where mu_z > 0, else negative_slope; mu_a = J mu_z,
    var_a = J**2 var_z; all like mu_z."""
    jac = np.where(mu_z > 0, 1, negative_slope).astype(mu_z.dtype)
    return mu_z * jac, None if var_z is None else var_z * (jac * jac), jac


def _relu_moments(mu_z, var_z):
    """Exact mean m and variance v of max(0, Z), Z ~ N(mu_z, var_z), and Phi(mu_z / sd_z), unfloored."""
    sd = np.sqrt(var_z)
    alpha = mu_z / sd
    cdf = ndtr(alpha).astype(mu_z.dtype)
    pdf = (np.exp(-0.5 * alpha * alpha) / np.sqrt(2.0 * np.pi)).astype(mu_z.dtype)
    m = mu_z * cdf + sd * pdf
    return m, -m * m + 2.0 * m * mu_z - mu_z * sd * pdf + (var_z - mu_z * mu_z) * cdf, cdf


def mixture_relu_forward(mu_z, var_z):
    """Exact moments of max(0, Z), Z ~ N(mu_z, var_z): mu_a, var_a, J = Phi(mu_z / sd_z)."""
    m, var, cdf = _relu_moments(mu_z, var_z)
    return np.maximum(m, 1e-6), np.maximum(var, 1e-6), cdf


def mixture_leaky_relu_forward(mu_z, var_z, negative_slope):
    """Exact moments of A = max(Z, 0) + s min(Z, 0), Z ~ N(mu_z, var_z), s = negative_slope.

    With A = (1 - s) R + s Z, R = max(0, Z) (moments m, v) and Cov(R, Z) = Phi var_z:
    mu_a = (1 - s) m + s mu_z, var_a = max((1 - s)**2 v + (s**2 + 2 s (1 - s) Phi) var_z, 1e-6),
    J = Cov(A, Z) / var_z = s + (1 - s) Phi.
    """
    s = negative_slope
    m, v, cdf = _relu_moments(mu_z, var_z)
    var = (1 - s) * (1 - s) * v + (s * s + 2 * s * (1 - s) * cdf) * var_z
    return (1 - s) * m + s * mu_z, np.maximum(var, 1e-6), s + (1 - s) * cdf


def scale_by_jacobian(delta_mu, delta_var, jac):
    """Innovations of an activation's output -> of its input: J * delta_mu, J**2 * delta_var."""
    return delta_mu * jac, None if delta_var is None else delta_var * (jac * jac)


# ----------------------------------------------------------------------------- output update (§4) and step (§6.2)

def gaussian_innovations(mu, var, y, sigma_v):
    """Observation y = z + v, v ~ N(0, sigma_v**2), elementwise on (B, N) arrays.

    delta_mu = (y - mu) / S, delta_var = -1 / S with S = var + sigma_v**2; where y is NaN
    (unobserved) or S is not finite, both deltas are 0.
    """
    s = var + sigma_v * sigma_v
    ok = np.isfinite(s) & ~np.isnan(y)
    safe_s = np.where(ok, s, 1)
    delta_mu = np.where(ok, (np.where(ok, y, 0) - mu) / safe_s, 0).astype(mu.dtype)
    delta_var = np.where(ok, -1 / safe_s, 0).astype(mu.dtype)
    return delta_mu, delta_var


def capped_update(mu, var, delta_mu, delta_var, cap_factor):
    """In place: add each delta clipped to sqrt(prior var) / cap_factor; floor variances at 1e-5."""
    bound = np.sqrt(var) / cap_factor
    mu += np.sign(delta_mu) * np.minimum(np.abs(delta_mu), bound)
    var += np.sign(delta_var) * np.minimum(np.abs(delta_var), bound)
    var[var <= 0] = 1e-5


def normal_cdf(x):
    """Standard normal CDF, elementwise."""
    return ndtr(x).astype(x.dtype, copy=False)
