"""Forward moments against Monte Carlo: sample weights and inputs, push them through, compare.

The GMA moments of a sum of independent products are exact, so the sample mean
and variance must agree within a few standard errors (5 here). The approximate rules (the
max-pool rule, the linearised leaky ReLU) are held to their predicted gap from the sampled
moments, and to exactness where that gap vanishes.
"""
import numpy as np
import pytest
from scipy.special import ndtr

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


# ----------------------------------------------------------------------------- max pooling
# The rule (docs/math.md §3.4.1) passes the moments of the cell of largest mean: not the moments
# of the max. For two Gaussian cells Clark's formulas give the max's moments exactly, so the
# gap between the rule and the sampled max is predicted, and asserted, not just bounded.

def clark_max_moments(mu1, var1, mu2, var2):
    """Mean and variance of max(X1, X2) for independent Gaussians (Clark, 1961)."""
    theta = np.sqrt(var1 + var2)
    a = (mu1 - mu2) / theta
    cdf, cdf_neg, pdf = ndtr(a), ndtr(-a), np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)
    mean = mu1 * cdf + mu2 * cdf_neg + theta * pdf
    second = (mu1 ** 2 + var1) * cdf + (mu2 ** 2 + var2) * cdf_neg + (mu1 + mu2) * theta * pdf
    return mean, second - mean ** 2


def max_of_window(rng, mu_a, var_a):
    """The rule's moments and index for one 2x2 window, and N draws of the window's max."""
    g = window2d((1, 2, 2), 2, 2, 0, "symmetric")
    mu, var, index = ref.maxpool2d_forward(mu_a[None, None], var_a[None, None], g)
    cells = sample(rng, mu_a, var_a).reshape(N, 4)
    return mu.item(), var.item(), index.item(), cells, cells.max(1)


@pytest.mark.parametrize("mu1, var1, mu2, var2", [(0.0, 1.0, 0.0, 1.0), (0.3, 1.0, 0.0, 0.5)])
def test_maxpool2d_rule_misses_the_max_by_clarks_gap(rng, mu1, var1, mu2, var2):
    """Two live cells (the other two sit 60 sd below): for iid N(0, 1) the max has mean
    1/sqrt(pi) ~ 0.564 and variance 1 - 1/pi ~ 0.682, the rule passes 0 and 1; the sampled gap
    equals Clark's within 5 standard errors."""
    mu_a, var_a = np.array([[mu1, mu2], [-60.0, -60.0]]), np.array([[var1, var2], [1.0, 1.0]])
    mu, var, index, _, top = max_of_window(rng, mu_a, var_a)
    assert (mu, var, index) == (mu1, var1, 0)
    want_mean, want_var = clark_max_moments(mu1, var1, mu2, var2)
    if mu1 == mu2 == 0 and var1 == var2 == 1:
        np.testing.assert_allclose((want_mean, want_var), (1 / np.sqrt(np.pi), 1 - 1 / np.pi))
    m_err, v_err = np.sqrt(top.var() / N), np.sqrt(np.var((top - top.mean()) ** 2) / N)
    assert abs((top.mean() - mu) - (want_mean - mu)) < 5 * m_err
    assert abs((top.var() - var) - (want_var - var)) < 5 * v_err
    assert want_mean - mu > 0.3 or want_var - var < -0.2      # a real gap, far above the errors


def test_maxpool2d_rule_is_exact_for_a_well_separated_winner(rng):
    """A winner 10 sd (of the difference) above the others: the sampled max is the winner in
    every draw, its moments are the rule's, and Cov(max, cell) / var(cell) is the rule's
    Jacobian (1 at the winner, 0 elsewhere)."""
    mu_a, var_a = np.array([[0.0, 0.5], [10.5, -1.0]]), np.array([[0.3, 0.5, 0.5, 0.4]]).reshape(2, 2)
    mu, var, index, cells, top = max_of_window(rng, mu_a, var_a)
    assert (mu, var, index) == (10.5, 0.5, 2)
    assert np.array_equal(top, cells[:, 2])
    assert_moments(top[:, None], np.array([mu]), np.array([var]))
    jac = ((top - top.mean())[:, None] * (cells - cells.mean(0))).mean(0) / var_a.ravel()
    np.testing.assert_allclose(jac, [0, 0, 1, 0], atol=0.01)


# ----------------------------------------------------------------------------- leaky ReLU

def leaky(z, slope):
    return np.where(z > 0, z, slope * z)


@pytest.mark.parametrize("slope", [0.01, 0.1, 0.3, -0.5])
def test_mixture_leaky_relu_moments_and_jacobian(rng, slope):
    mu_z = np.array([[-1.5, -0.2, 0.0, 0.7, 2.5]])
    var_z = np.array([[0.5, 1.0, 2.0, 0.3, 1.5]])
    z = sample(rng, mu_z[0], var_z[0])
    a = leaky(z, slope)
    mu_a, var_a, jac = ref.mixture_leaky_relu_forward(mu_z, var_z, slope)
    assert_moments(a, mu_a[0], var_a[0])
    cov_az = ((a - a.mean(0)) * (z - z.mean(0))).mean(0)
    np.testing.assert_allclose(jac[0], cov_az / var_z[0], atol=0.01)


def test_leaky_relu_linearised_is_exact_far_from_the_kink(rng):
    """|mu_z| = 8 sd or more: z never crosses 0 in the draws, and the linearised moments hold."""
    mu_z, var_z = np.array([[8.0, -9.0, 20.0]]), np.array([[1.0, 0.5, 4.0]])
    z = sample(rng, mu_z[0], var_z[0])
    assert np.array_equal(z > 0, np.broadcast_to(mu_z[0] > 0, z.shape))
    mu_a, var_a, _ = ref.leaky_relu_forward(mu_z, var_z, 0.1)
    assert_moments(leaky(z, 0.1), mu_a[0], var_a[0])


def test_leaky_relu_linearised_misses_the_kink_by_its_stated_gap(rng):
    """At mu_z = 0 the rule gives mu_a = 0, var_a = slope**2 var_z; the sampled moments are
    (1 - s) sd / sqrt(2 pi) and ((1 + s**2) / 2 - (1 - s)**2 / (2 pi)) var_z (the mixture's)."""
    s, var_z = 0.1, np.array([[2.0]])
    mu_a, var_a, _ = ref.leaky_relu_forward(np.zeros((1, 1)), var_z, s)
    assert (mu_a.item(), var_a.item()) == (0.0, s * s * 2.0)
    gap_mean = (1 - s) * np.sqrt(2.0) / np.sqrt(2 * np.pi) - mu_a.item()
    gap_var = ((1 + s * s) / 2 - (1 - s) ** 2 / (2 * np.pi)) * 2.0 - var_a.item()
    a = leaky(sample(rng, np.zeros(1), var_z[0]), s)
    assert_moments(a, mu_a[0] + gap_mean, var_a[0] + gap_var)
    assert gap_mean > 0.5 and gap_var > 0.7                  # a real gap, far above the errors
