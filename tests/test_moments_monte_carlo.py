"""Forward moments against Monte Carlo: sample weights and inputs, push them through, compare.

The GMA moments of a sum of independent products are exact, so the sample mean
and variance must agree within a few standard errors (5 here).
"""
import numpy as np
import pytest

import naive
from conftest import gaussian_tensors
from tagi.backends import numpy_backend as ref
from tagi.geometry import window2d

N = 200_000


def sample(rng, mu, var):
    """N draws of independent Gaussians with the given moments: (N, *mu.shape)."""
    return mu + np.sqrt(var) * rng.standard_normal((N,) + mu.shape)


def assert_moments(draws, mu, var, sigmas=5.0):
    """draws (N, ...) have mean mu and variance var within `sigmas` standard errors."""
    centred = draws - draws.mean(0)
    m_err = np.sqrt(draws.var(0) / N)
    v_err = np.sqrt(np.var(centred ** 2, axis=0) / N)
    assert np.all(np.abs(draws.mean(0) - mu) < sigmas * m_err + 1e-12), "means disagree"
    assert np.all(np.abs(draws.var(0) - var) < sigmas * v_err + 1e-12), "variances disagree"


def test_linear(rng):
    mu_a, var_a = gaussian_tensors(rng, (1, 4))
    mu_w, var_w = gaussian_tensors(rng, (3, 4))
    mu_b, var_b = gaussian_tensors(rng, (3,))
    a, w, b = sample(rng, mu_a[0], var_a[0]), sample(rng, mu_w, var_w), sample(rng, mu_b, var_b)
    z = np.einsum("noi,ni->no", w, a) + b
    mu_z, var_z = ref.linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b)
    assert_moments(z, mu_z[0], var_z[0])


@pytest.mark.parametrize("case", [
    (2, 5, 5, 2, 3, 1, 1, "symmetric"),
    (2, 5, 5, 2, 3, 2, 1, "symmetric"),
    (1, 6, 6, 2, 3, 2, 1, "bottom_right"),
    (2, 7, 7, 1, 3, 1, 1, "bottom_right"),
])
def test_conv2d(rng, case):
    c, h, w_, c_out, k, s, p, ptype = case
    g = window2d((c, h, w_), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (1, c, h, w_))
    mu_w, var_w = gaussian_tensors(rng, (c_out, c, k, k))
    mu_b, var_b = gaussian_tensors(rng, (c_out,))
    a, w, b = sample(rng, mu_a[0], var_a[0]), sample(rng, mu_w, var_w), sample(rng, mu_b, var_b)
    z = np.zeros((N, c_out, g.out_height, g.out_width))
    for oy in range(g.out_height):
        for ox in range(g.out_width):
            z[:, :, oy, ox] = b
            for iy, ix, ky, kx in naive.window_cells(g, oy, ox):
                z[:, :, oy, ox] += np.einsum("noc,nc->no", w[:, :, :, ky, kx], a[:, :, iy, ix])
    mu_z, var_z = ref.conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g)
    assert_moments(z, mu_z[0], var_z[0])


@pytest.mark.parametrize("ptype", ["symmetric", "bottom_right"])
def test_avgpool2d(rng, ptype):
    g = window2d((2, 5, 5), 3, 2, 1, ptype)
    mu_a, var_a = gaussian_tensors(rng, (1, 2, 5, 5))
    a = sample(rng, mu_a[0], var_a[0])
    padded = np.zeros((N, 2, 5 + g.pad_begin + g.pad_end, 5 + g.pad_begin + g.pad_end))
    padded[:, :, g.pad_begin:g.pad_begin + 5, g.pad_begin:g.pad_begin + 5] = a
    out = np.stack([np.stack([padded[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].mean((2, 3))
                              for ox in range(g.out_width)], -1) for oy in range(g.out_height)], -2)
    mu, var = ref.avgpool2d_forward(mu_a, var_a, g)
    assert_moments(out, mu[0], var[0])


def test_mixture_relu_moments_and_jacobian(rng):
    mu_z = np.array([[-1.5, -0.2, 0.0, 0.7, 2.5]])
    var_z = np.array([[0.5, 1.0, 2.0, 0.3, 1.5]])
    z = sample(rng, mu_z[0], var_z[0])
    a = np.maximum(z, 0.0)
    mu_a, var_a, jac = ref.mixture_relu_forward(mu_z, var_z)
    assert_moments(a, mu_a[0], var_a[0])
    cov_az = ((a - a.mean(0)) * (z - z.mean(0))).mean(0)
    np.testing.assert_allclose(jac[0], cov_az / var_z[0], atol=0.01)
