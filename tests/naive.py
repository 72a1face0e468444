"""Naive loop implementations of the TAGI ops, written from docs/math.md, for tests only.

Slow and obvious on purpose: every output cell is one explicit sum.
"""
import numpy as np


def window_cells(g, oy, ox):
    """Input cells (iy, ix, ky, kx) read by output (oy, ox), padding cells left out."""
    cells = []
    for ky in range(g.kernel):
        for kx in range(g.kernel):
            iy, ix = oy * g.stride + ky - g.pad_begin, ox * g.stride + kx - g.pad_begin
            if 0 <= iy < g.height and 0 <= ix < g.width:
                cells.append((iy, ix, ky, kx))
    return cells


def conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g):
    b_, c_out = mu_a.shape[0], mu_w.shape[0]
    mu_z = np.zeros((b_, c_out, g.out_height, g.out_width))
    var_z = np.zeros_like(mu_z)
    for b in range(b_):
        for co in range(c_out):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    m, v = mu_b[co], var_b[co]
                    for iy, ix, ky, kx in window_cells(g, oy, ox):
                        for ci in range(g.channels):
                            wm, wv = mu_w[co, ci, ky, kx], var_w[co, ci, ky, kx]
                            am, av = mu_a[b, ci, iy, ix], var_a[b, ci, iy, ix]
                            m += wm * am
                            v += (wm * wm + wv) * av + wv * am * am
                    mu_z[b, co, oy, ox], var_z[b, co, oy, ox] = m, v
    return mu_z, var_z


def conv2d_backward(delta_mu, delta_var, mu_w, g):
    b_, c_out = delta_mu.shape[:2]
    d_mu = np.zeros((b_, g.channels, g.height, g.width))
    d_var = np.zeros_like(d_mu)
    for b in range(b_):
        for co in range(c_out):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    for iy, ix, ky, kx in window_cells(g, oy, ox):
                        for ci in range(g.channels):
                            w = mu_w[co, ci, ky, kx]
                            d_mu[b, ci, iy, ix] += w * delta_mu[b, co, oy, ox]
                            d_var[b, ci, iy, ix] += w * w * delta_var[b, co, oy, ox]
    return d_mu, d_var


def conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g):
    b_, c_out = delta_mu.shape[:2]
    s_mu, s_var = np.zeros(var_w.shape), np.zeros(var_w.shape)
    for b in range(b_):
        for co in range(c_out):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    for iy, ix, ky, kx in window_cells(g, oy, ox):
                        for ci in range(g.channels):
                            a = mu_a[b, ci, iy, ix]
                            s_mu[co, ci, ky, kx] += a * delta_mu[b, co, oy, ox]
                            s_var[co, ci, ky, kx] += a * a * delta_var[b, co, oy, ox]
    return (var_w * s_mu, var_w ** 2 * s_var,
            var_b * delta_mu.sum((0, 2, 3)), var_b ** 2 * delta_var.sum((0, 2, 3)))


def avgpool2d_forward(mu_a, var_a, g):
    b_, k2 = mu_a.shape[0], g.kernel ** 2
    mu = np.zeros((b_, g.channels, g.out_height, g.out_width))
    var = np.zeros_like(mu)
    for b in range(b_):
        for c in range(g.channels):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    for iy, ix, _, _ in window_cells(g, oy, ox):
                        mu[b, c, oy, ox] += mu_a[b, c, iy, ix] / k2
                        var[b, c, oy, ox] += var_a[b, c, iy, ix] / k2 ** 2
    return mu, var


def avgpool2d_backward(delta_mu, delta_var, g):
    b_, k2 = delta_mu.shape[0], g.kernel ** 2
    d_mu = np.zeros((b_, g.channels, g.height, g.width))
    d_var = np.zeros_like(d_mu)
    for b in range(b_):
        for c in range(g.channels):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    for iy, ix, _, _ in window_cells(g, oy, ox):
                        d_mu[b, c, iy, ix] += delta_mu[b, c, oy, ox] / k2
                        d_var[b, c, iy, ix] += delta_var[b, c, oy, ox] / k2 ** 2
    return d_mu, d_var
